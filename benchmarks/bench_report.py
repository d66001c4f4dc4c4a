"""pytest-benchmark coverage of the hot paths the ``python -m lute_ipc bench`` report compares.

For regression tracking (``pytest benchmarks/bench_report.py --benchmark-autosave``, later
``--benchmark-compare``); the comparative report itself is ``python -m lute_ipc bench``.
The contenders and workloads are the report's own (``lute_ipc.bench``), not copies:

* decode in memory, one buffer and 8 KiB chunks, at 64 B and 64 KiB, for both lute_ipc
  cores, msgpack and the bare ``pickle.loads`` floor;
* end to end on a Unix socket (persistent connection and connection per message) and
  over a pipe with mixed text, at 1 KiB and 64 KiB, run in a benchmark worker process
  (``python -m lute_ipc.bench.worker``) as the report does. The benchmark times the
  whole trial, Task fork and connection set-up included (the report excludes them), so
  compare these numbers only with themselves.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from lute_ipc.bench.decode import decode_run, decode_trial
from lute_ipc.bench.runner import Workers

DECODE_COUNTS = {64: 20_000, 65536: 200}
STREAM_COUNTS = {1024: 5_000, 65536: 300}


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


@pytest.mark.parametrize("size", sorted(DECODE_COUNTS), ids=lambda s: f"{s}B")
@pytest.mark.parametrize("mode", ["buffer", "8k"])
@pytest.mark.parametrize("contender", ["lute_ipc-cython", "lute_ipc-pure", "msgpack", "pickle-loads"])
def test_decode(benchmark: Any, contender: str, mode: str, size: int) -> None:
    _decode_available(contender)
    count = DECODE_COUNTS[size]
    run = decode_run(contender, mode, size, count)
    benchmark.group = f"decode-{mode}-{size}B"
    assert benchmark(run) == count


@pytest.mark.parametrize("size", sorted(STREAM_COUNTS), ids=lambda s: f"{s}B")
@pytest.mark.parametrize("contender", ["lute_ipc-cython", "pyzmq", "mp-connection", "raw-bytes"])
def test_stream_unix(benchmark: Any, workers: Workers, contender: str, size: int) -> None:
    if contender == "pyzmq":
        pytest.importorskip("zmq")
    if contender == "lute_ipc-cython":
        pytest.importorskip("lute_ipc._framing_c")
    benchmark.group = f"stream-unix-{size}B"
    trial = workers.trial_callable("stream-unix", contender, size, STREAM_COUNTS[size])
    assert benchmark.pedantic(trial, rounds=3, iterations=1) > 0


@pytest.mark.parametrize("contender", ["lute_ipc-cython", "lute", "mp-connection"])
def test_per_message_unix(benchmark: Any, workers: Workers, contender: str) -> None:
    benchmark.group = "per-message-unix-1024B"
    trial = workers.trial_callable("per-message-unix", contender, 1024, 200)
    assert benchmark.pedantic(trial, rounds=3, iterations=1) > 0


@pytest.mark.parametrize("contender", ["lute_ipc-cython", "raw-bytes"])
def test_pipe_mixed(benchmark: Any, workers: Workers, contender: str) -> None:
    benchmark.group = "pipe-mixed-65536B"
    trial = workers.trial_callable("pipe-mixed", contender, 65536, 200)
    assert benchmark.pedantic(trial, rounds=3, iterations=1) > 0


def test_decode_trial_counts() -> None:
    """The report's own check: a decoder that loses messages is an error, not a fast result."""
    assert decode_trial(decode_run("lute_ipc-pure", "8k", 64, 100), 100) > 0
