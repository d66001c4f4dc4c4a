"""pytest-benchmark suite of the core in memory: frame decode/encode per message shape, and the pipe splitter.

For regression tracking (``python -m pytest benchmarks/ --benchmark-only --benchmark-autosave``,
later ``--benchmark-compare``). The workloads are the package's own (``lute_ipc.bench``),
not copies; the comparative reports with targets are ``python -m lute_ipc bench``,
``python -m lute_ipc.bench.codec_report`` and ``python -m lute_ipc.bench.splitter_report``.
Each benchmark checks its result (a decoder that loses messages is not fast, it is wrong).
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from lute_ipc.bench import payloads, splitter_report
from lute_ipc.bench.codec_report import SHAPES, runs

COUNT = 20_000
MIB = 1024 * 1024


@pytest.fixture(params=SHAPES)
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("contender", ["c one buffer", "c 8 KiB", "py one buffer", "pickle.loads loop"])
def test_decode(benchmark: Any, shape: str, contender: str) -> None:
    contenders = runs(shape, COUNT)
    if contender not in contenders:
        pytest.skip("the Cython extension is not built")
    benchmark.group = f"decode-{shape}"
    got = benchmark(contenders[contender])
    assert (got if isinstance(got, int) else len(got)) == COUNT  # type: ignore[arg-type]


@pytest.mark.parametrize("contender", ["c encode_frame", "py encode_frame", "pickle.dumps loop"])
def test_encode(benchmark: Any, shape: str, contender: str) -> None:
    contenders = runs(shape, COUNT)
    if contender not in contenders:
        pytest.skip("the Cython extension is not built")
    benchmark.group = f"encode-{shape}"
    assert len(benchmark(contenders[contender])) == COUNT  # type: ignore[arg-type]


def test_decoded_messages_are_the_sent_ones(shape: str) -> None:
    """The workload itself: what the decoders of this suite return is what was framed."""
    decoded = runs(shape, 100)["py one buffer"]
    assert decoded() == 100
    assert pickle.loads(payloads.pickled_payloads(shape, 100)[99]) == payloads.messages(shape, 100)[99]


def test_splitter_text_heavy(benchmark: Any) -> None:
    stream = splitter_report.text_heavy_stream(8 * MIB)
    benchmark.group = "splitter"
    assert benchmark(splitter_report.splitter_run(splitter_report.implementations()[0], stream)) > 0


def test_splitter_pickle_heavy(benchmark: Any) -> None:
    pickles, stream = splitter_report.pickle_heavy_objects(8 * MIB)
    benchmark.group = "splitter"
    assert benchmark(splitter_report.splitter_run(splitter_report.implementations()[0], stream)) >= len(pickles)


def test_splitter_pickle_heavy_loads_baseline(benchmark: Any) -> None:
    pickles, _ = splitter_report.pickle_heavy_objects(8 * MIB)
    benchmark.group = "splitter"
    assert benchmark(splitter_report.loads_loop(pickles)) == len(pickles)


def test_splitter_large_pickle(benchmark: Any) -> None:
    data = splitter_report.large_pickle(20 * MIB)
    benchmark.group = "splitter-large"
    assert benchmark(splitter_report.splitter_run(splitter_report.implementations()[0], data)) == 1
