"""Decode and encode speed of the frame codec (issue: foundation).

Run as a script for the report (medians of interleaved rounds, ratios measured in the same
run), or with ``python -m pytest benchmarks/bench_decode.py`` for pytest-benchmark tracking.

Contenders on 100,000 frames of ~140-byte pickled Messages:
* bare ``pickle.loads`` loop over the same payloads (the ceiling for decode + unpickle);
* lute_ipc Cython and pure-Python decoders, one buffer and 8 KiB chunks;
* the original LUTE algorithm (benchmarks/lute_reference.py), one buffer;
* encode: ``encode_frame`` vs a bare ``pickle.dumps`` loop.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._timing import interleaved, median_ratio, rate  # noqa: E402
from benchmarks.lute_reference import LuteDecoder  # noqa: E402
from lute_ipc import _framing_py  # noqa: E402
from lute_ipc.message import Message  # noqa: E402

try:
    from lute_ipc import _framing_c
except ImportError:  # pragma: no cover - report says so
    _framing_c = None

CHUNK = 8192


def make_messages(count: int) -> List[Message]:
    return [Message(f"log line {i:07d}: the quick brown fox jumps over the dog", "TASK_LOG") for i in range(count)]


def decode_whole(module: Any, stream: bytes, **options: Any) -> Callable[[], List[Any]]:
    def run() -> List[Any]:
        return module.FrameDecoder(**options).feed(stream)
    return run


def decode_chunked(module: Any, stream: bytes, **options: Any) -> Callable[[], List[Any]]:
    chunks = [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]

    def run() -> List[Any]:
        decoder = module.FrameDecoder(**options)
        out: List[Any] = []
        for chunk in chunks:
            out += decoder.feed(chunk)
        return out
    return run


def report(count: int, rounds: int, lute_count: int) -> None:
    if _framing_c is None:
        print("Cython extension not built: nothing to compare", file=sys.stderr)
        sys.exit(1)
    msgs = make_messages(count)
    payloads = [pickle.dumps(m) for m in msgs]
    stream = b"".join(_framing_c.encode_frame(m) for m in msgs)
    loads, dumps = pickle.loads, pickle.dumps
    print(f"{count:,} frames, payload {len(payloads[0])} B, stream {len(stream) / 1e6:.1f} MB, {rounds} rounds")

    for name, run in {"c one buffer": decode_whole(_framing_c, stream), "c 8 KiB": decode_chunked(_framing_c, stream)}.items():
        assert run() == msgs, name

    t = interleaved({
        "pickle.loads loop": lambda: [loads(p) for p in payloads],
        "c one buffer": decode_whole(_framing_c, stream),
        "c 8 KiB": decode_chunked(_framing_c, stream),
        "py one buffer": decode_whole(_framing_py, stream),
        "py 8 KiB": decode_chunked(_framing_py, stream),
        "c framing only": decode_whole(_framing_c, stream, loads=None),
        "py framing only": decode_whole(_framing_py, stream, loads=None),
        "pickle.dumps loop": lambda: [dumps(m) for m in msgs],
        "c encode_frame": lambda: [_framing_c.encode_frame(m) for m in msgs],
        "py encode_frame": lambda: [_framing_py.encode_frame(m) for m in msgs],
    }, rounds)
    print(f"\n{'contender':<22}{'msg/s (median)':>16}")
    for name, times in t.items():
        print(f"{name:<22}{rate(times, count):>16,.0f}")

    # LUTE's decoder is quadratic on one buffer: time it once on its own stream size.
    lute_stream = stream if lute_count == count else b"".join(_framing_c.encode_frame(m) for m in msgs[:lute_count])
    start = time.perf_counter()
    assert len(LuteDecoder().feed(lute_stream)) == lute_count
    lute_time = time.perf_counter() - start
    c_same = min(interleaved({"c": decode_whole(_framing_c, lute_stream)}, 3)["c"])
    print(f"{'LUTE one buffer':<22}{lute_count / lute_time:>16,.0f}   ({lute_count:,} frames, one run)")

    print("\nratios (median of per-round ratios)         target")
    rows = [
        ("Cython decode / pickle.loads, one buffer", median_ratio(t, "pickle.loads loop", "c one buffer"), ">= 0.85"),
        ("Cython decode / pickle.loads, 8 KiB", median_ratio(t, "pickle.loads loop", "c 8 KiB"), ">= 0.85"),
        ("Cython framing only / pure framing only", median_ratio(t, "py framing only", "c framing only"), ">= 10"),
        ("Cython decode / pure decode, one buffer", median_ratio(t, "py one buffer", "c one buffer"), ""),
        ("Cython encode_frame / pickle.dumps", median_ratio(t, "pickle.dumps loop", "c encode_frame"), ">= 0.9"),
        (f"Cython decode / LUTE, one buffer of {lute_count:,}", lute_time / c_same, ">= 50"),
    ]
    for label, value, target in rows:
        print(f"  {label:<44}{value:>8.2f}x  {target}")


# ----------------------------------------------------------------------------- pytest-benchmark
_MSGS = make_messages(20_000)
_STREAM = _framing_py.encode_frame  # placeholder replaced below (keeps import cheap for the report)


def _stream() -> bytes:
    global _STREAM
    if not isinstance(_STREAM, bytes):
        _STREAM = b"".join(_framing_py.encode_frame(m) for m in _MSGS)
    return _STREAM


def _impls() -> Dict[str, Any]:
    impls = {"py": _framing_py}
    if _framing_c is not None:
        impls["c"] = _framing_c
    return impls


def test_decode_one_buffer(benchmark: Any) -> None:
    for name, module in _impls().items():
        if name == "c":
            assert benchmark(decode_whole(module, _stream())) == _MSGS


def test_decode_8k_chunks(benchmark: Any) -> None:
    if _framing_c is not None:
        assert benchmark(decode_chunked(_framing_c, _stream())) == _MSGS


def test_framing_only(benchmark: Any) -> None:
    if _framing_c is not None:
        assert len(benchmark(decode_whole(_framing_c, _stream(), loads=None))) == len(_MSGS)


def test_pickle_loads_baseline(benchmark: Any) -> None:
    payloads = [pickle.dumps(m) for m in _MSGS]
    loads = pickle.loads
    assert len(benchmark(lambda: [loads(p) for p in payloads])) == len(_MSGS)


def test_encode_frame(benchmark: Any) -> None:
    if _framing_c is not None:
        encode = _framing_c.encode_frame
        assert len(benchmark(lambda: [encode(m) for m in _MSGS])) == len(_MSGS)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lute-count", type=int, default=100_000, help="frames for the (quadratic) LUTE decoder")
    args = parser.parse_args()
    report(args.count, args.rounds, args.lute_count)
