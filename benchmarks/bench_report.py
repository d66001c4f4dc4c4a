"""pytest-benchmark coverage of the hot paths the ``python -m lute_ipc bench`` report compares.

For regression tracking (``pytest benchmarks/bench_report.py --benchmark-autosave``, later
``--benchmark-compare``); the comparative report itself is ``python -m lute_ipc bench``.
The contenders and workloads are the report's own (``lute_ipc.bench``), not copies:

* decode in memory, one buffer and 8 KiB chunks, for the objects and 64 KiB shapes, for
  both lute_ipc cores, msgpack and the bare ``pickle.loads`` floor;
* end to end on a Unix socket (persistent connection, and LUTE's connection per message)
  and over a pipe with mixed text, for the text, objects and 64 KiB shapes, run in a
  benchmark worker process
  (``python -m lute_ipc.bench.worker``) as the report does. The benchmark times the
  whole trial, Task fork and connection set-up included (the report excludes them), so
  compare these numbers only with themselves.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from lute_ipc.bench.decode import decode_run, decode_trial
from lute_ipc.bench.runner import Workers

DECODE_COUNTS = {"objects": 20_000, "64KiB": 200}
STREAM_COUNTS = {"text": 10_000, "objects": 10_000, "64KiB": 300}


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    pool = Workers()
    yield pool
    pool.close()


def _decode_available(contender: str) -> None:
    if contender == "msgpack":
        pytest.importorskip("msgpack")
    if contender == "lute_ipc-cython":
        pytest.importorskip("lute_ipc._framing_c")


@pytest.mark.parametrize("shape", sorted(DECODE_COUNTS))
@pytest.mark.parametrize("mode", ["buffer", "8k"])
@pytest.mark.parametrize("contender", ["lute_ipc-cython", "lute_ipc-pure", "msgpack", "pickle-loads"])
def test_decode(benchmark: Any, contender: str, mode: str, shape: str) -> None:
    _decode_available(contender)
    count = DECODE_COUNTS[shape]
    run = decode_run(contender, mode, shape, count)
    benchmark.group = f"decode-{mode}-{shape}"
    assert benchmark(run) == count


@pytest.mark.parametrize("shape", sorted(STREAM_COUNTS))
@pytest.mark.parametrize("contender", ["lute_ipc-cython-read", "pyzmq", "mp-connection", "raw-bytes"])
def test_stream_unix(benchmark: Any, workers: Workers, contender: str, shape: str) -> None:
    if contender == "pyzmq":
        pytest.importorskip("zmq")
    if contender.startswith("lute_ipc-cython"):
        pytest.importorskip("lute_ipc._framing_c")
    benchmark.group = f"stream-unix-{shape}"
    trial = workers.trial_callable("stream-unix", contender, shape, STREAM_COUNTS[shape])
    assert benchmark.pedantic(trial, rounds=3, iterations=1) > 0


@pytest.mark.parametrize("contender", ["lute_ipc-cython", "lute", "lute-lcls", "mp-connection"])
def test_lute_per_message(benchmark: Any, workers: Workers, contender: str) -> None:
    if contender == "lute-lcls":
        pytest.importorskip("lute.execution.ipc")
    benchmark.group = "lute-per-message-objects"
    trial = workers.trial_callable("lute-per-message", contender, "objects", 200)
    assert benchmark.pedantic(trial, rounds=3, iterations=1) > 0


@pytest.mark.parametrize("contender", ["lute_ipc-cython", "raw-bytes"])
def test_pipe_mixed(benchmark: Any, workers: Workers, contender: str) -> None:
    benchmark.group = "pipe-mixed-64KiB"
    trial = workers.trial_callable("pipe-mixed", contender, "64KiB", 200)
    assert benchmark.pedantic(trial, rounds=3, iterations=1) > 0


def test_decode_trial_counts() -> None:
    """The report's own check: a decoder that loses messages is an error, not a fast result."""
    assert decode_trial(decode_run("lute_ipc-pure", "8k", "objects", 100), 100) > 0
