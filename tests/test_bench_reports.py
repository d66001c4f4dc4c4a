"""The focused benchmark reports of ``lute_ipc.bench`` run and compute the right things (never how fast)."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from lute_ipc.bench import callgrind, codec_report, latency, mac, payloads
from lute_ipc.bench.decode import decode_run, decode_trial
from lute_ipc.bench.report import Report, Result
from lute_ipc.bench.targets import TARGETS, target_rows


def test_shapes_name_the_messages_the_issue_asks_for() -> None:
    text = payloads.messages("text", 3)[2]
    objects = payloads.messages("objects", 3)[2]
    assert (text.contents, text.signal) == ("log line 2 " + "x" * 100, "TASK_LOG")
    assert (objects.contents, objects.signal) == ({"i": 2, "v": "x" * 40}, None)
    assert payloads.check_last("objects", 3, objects) is None
    assert payloads.check_last("objects", 3, payloads.messages("objects", 3)[1]) is not None
    assert payloads.check_last("objects", 3, payloads.messages("objects", 3)[1], ordered=False) is None


def test_codec_report_prints_both_shapes_and_their_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    assert codec_report.main(["--count", "300", "--rounds", "1", "--lute-count", "50"]) == 0
    out = capsys.readouterr().out
    for shape in ("text", "objects"):
        assert f"shape {shape}: {payloads.shape(shape).code}" in out
    assert out.count("Cython decode / LUTE, one buffer") == 2
    assert "load average" in out


@pytest.mark.parametrize("decoder", ["cython", "pure", "pickle.loads", "baseline",
                                     "cython-encode", "pure-encode", "pickle.dumps"])
@pytest.mark.parametrize("shape", callgrind.SHAPES)
def test_callgrind_child_decodes_every_frame(decoder: str, shape: str) -> None:
    if decoder.startswith("cython"):
        pytest.importorskip("lute_ipc._framing_c")
    assert callgrind.child(decoder, shape, 200) == 0


@pytest.mark.parametrize("shape", callgrind.SHAPES)
def test_callgrind_write_rows_write_every_message_with_their_core(shape: str) -> None:
    from lute_ipc import framing
    mine, other = ("cython-write", "pure-write") if framing.IMPLEMENTATION == "cython" else ("pure-write", "cython-write")
    assert callgrind.child(mine, shape, 200) == 0
    assert callgrind.child(mine + "-baseline", shape, 200) == 0
    assert callgrind.child(other, shape, 200) == 3  # the core is chosen per process: that row runs in another


def test_callgrind_table_subtracts_and_divides() -> None:
    lines = callgrind.table({"objects": {"cython": 2000, "pure": 8000, "pickle.loads": 4000}}, 10)
    row = next(line for line in lines if line.startswith("objects  cython"))
    assert row.split()[2:] == ["200", "0.50x", "4.00x"]
    lines = callgrind.table({"objects": {"cython-encode": 1000, "pure-encode": 3000, "pickle.dumps": 2000}}, 10)
    row = next(line for line in lines if line.startswith("objects  cython-encode"))
    assert row.split()[2:] == ["100", "0.50x", "3.00x"]


def test_mac_contenders_are_correct_tags() -> None:
    key, data = os.urandom(32), os.urandom(1000)
    tags = mac.taggers(key)
    assert tags["hmac-sha256"](data) == hmac.digest(key, data, "sha256")
    assert tags["hmac.digest"](data) == hmac.digest(key, data, "sha256")
    assert tags["blake2b-keyed"](data) == hashlib.blake2b(data, key=key, digest_size=32).digest()
    assert tags["blake2s-keyed"](data) == hashlib.blake2s(data, key=key, digest_size=32).digest()
    results = mac.measure(rounds=1, frames=10, big_mib=1)
    assert set(results) == set(tags) and all(r["us_per_frame"] > 0 and r["s_per_gb"] > 0 for r in results.values())


@pytest.mark.parametrize("contender", ["lute_ipc-raw", "pyzmq"])
def test_latency_gets_every_message(contender: str) -> None:
    samples = latency.latencies(contender, "unix", 5, 500.0)
    assert len(samples) == 5 and all(seconds > 0 for seconds in samples)


def test_targets_are_same_run_ratios_of_read() -> None:
    report = Report({"rounds": 1})
    report.results = [Result("stream-unix", "lute_ipc-cython-read", "objects", 300, [1.0]),
                      Result("stream-unix", "pyzmq", "objects", 200, [1.0])]
    rows = target_rows(report)
    assert rows[0][:3] == ["target", "shape", "measured"]
    assert rows[1][:3] == [TARGETS[0].title, "objects", "1.50x"] and rows[1][-1] == "met"
    assert len(rows) == 2  # the other targets were not measured: no row


def test_the_objects_floor_drops_each_result_as_read_does() -> None:
    """The objects target compares read() (which drops each message) with a pickle.loads loop
    that drops each result too, not with the list-keeping floor of the decode tables (whose
    garbage-collector passes over the kept results make it up to 2x slower)."""
    report = Report({"rounds": 1})
    report.results = [Result("stream-unix", "lute_ipc-cython-read", "objects", 600, [1.0]),
                      Result("decode-buffer", "pickle-loads", "objects", 500, [1.0]),
                      Result("decode-buffer", "pickle-loads-each", "objects", 1000, [1.0])]
    row = next(row for row in target_rows(report) if "pickle.loads" in row[0])
    assert row[2:4] == ["0.60x", ">= 0.85x"] and row[-1] == "below"


@pytest.mark.parametrize("contender", ["pickle-loads", "pickle-loads-each"])
def test_pickle_floors_decode_every_payload(contender: str) -> None:
    run = decode_run(contender, "buffer", "objects", 1000)
    assert decode_trial(run, 1000) > 0
