"""``python -m lute_ipc.bench.codec_report``: the frame codec in memory, per message shape, against pickle.

For each shape (text: the codec's fast path; objects: pickled) and ``--count`` frames:

* decode: a bare ``pickle.loads`` loop over the payloads already cut (the floor of any
  pickle-based decoder), the Cython and pure decoders on one buffer and in 8 KiB chunks,
  and both with ``loads=None`` (framing only);
* encode: ``encode_frame`` of both cores against a bare ``pickle.dumps`` loop;
* LUTE's decoding loop (:mod:`.lute_algorithm`, quadratic) on one buffer of
  ``--lute-count`` frames, timed once against the Cython decoder on the same frames.

Ratios are medians of per-round ratios of interleaved rounds, printed next to their
targets. Timing only: deterministic instruction counts are :mod:`.callgrind`.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import payloads
from .decode import decode_run
from .lute_algorithm import LuteDecoder, lute_encode
from .timing import median_ratio, rate, timed_rounds

SHAPES = ("text", "objects")


def _cores() -> Tuple[Any, Optional[Any]]:
    from .. import _framing_py

    try:
        from .. import _framing_c
    except ImportError:
        return _framing_py, None
    return _framing_py, _framing_c


def runs(shape: str, count: int) -> Dict[str, Callable[[], object]]:
    """The contenders of one shape, each a callable doing the whole job once."""
    pure, cython = _cores()
    msgs = payloads.messages(shape, count)
    cut = payloads.pickled_payloads(shape, count)
    stream = payloads.frame_stream(shape, count, pure.encode_frame)
    loads, dumps = pickle.loads, pickle.dumps
    contenders: Dict[str, Callable[[], object]] = {
        "pickle.loads loop": lambda: [loads(p) for p in cut],
        "py one buffer": decode_run("lute_ipc-pure", "buffer", shape, count),
        "py 8 KiB": decode_run("lute_ipc-pure", "8k", shape, count),
        "py framing only": lambda: pure.FrameDecoder(loads=None).feed(stream),
        "pickle.dumps loop": lambda: [dumps(m) for m in msgs],
        "py encode_frame": lambda: [pure.encode_frame(m) for m in msgs],
    }
    if cython is not None:
        contenders.update({
            "c one buffer": decode_run("lute_ipc-cython", "buffer", shape, count),
            "c 8 KiB": decode_run("lute_ipc-cython", "8k", shape, count),
            "c framing only": lambda: cython.FrameDecoder(loads=None).feed(stream),
            "c encode_frame": lambda: [cython.encode_frame(m) for m in msgs],
        })
    return contenders


RATIOS: Tuple[Tuple[str, str, str, str], ...] = (
    ("Cython decode / pickle.loads, one buffer", "pickle.loads loop", "c one buffer", ">= 0.85"),
    ("Cython decode / pickle.loads, 8 KiB", "pickle.loads loop", "c 8 KiB", ">= 0.85"),
    ("Cython framing only / pure framing only", "py framing only", "c framing only", ">= 10"),
    ("Cython decode / pure decode, one buffer", "py one buffer", "c one buffer", ""),
    ("Cython encode_frame / pickle.dumps", "pickle.dumps loop", "c encode_frame", ">= 0.9"),
)


def lute_ratio(shape: str, count: int) -> Tuple[float, float]:
    """(LUTE msg/s, Cython decode / LUTE) on one buffer of ``count`` frames: LUTE timed once (it is quadratic)."""
    _, cython = _cores()
    msgs = payloads.messages(shape, count)
    lute_stream = b"".join(lute_encode(m) for m in msgs)
    start = time.perf_counter()
    got = len(LuteDecoder().feed(lute_stream))
    lute_time = time.perf_counter() - start
    if got != count:
        raise RuntimeError(f"LUTE's decoder returned {got} of {count} messages")
    if cython is None:
        return count / lute_time, float("nan")
    ours = decode_run("lute_ipc-cython", "buffer", shape, count)
    ours_time = min(timed_rounds({"c": ours}, 3)["c"])
    return count / lute_time, lute_time / ours_time


def report(count: int, rounds: int, lute_count: int, shapes: Sequence[str] = SHAPES, out: Any = None) -> None:
    """Print the report of every shape (to ``out``, default ``sys.stdout``)."""
    out = sys.stdout if out is None else out
    _, cython = _cores()
    import os

    out.write(f"lute_ipc codec report: {count:,} frames per shape, {rounds} interleaved rounds, medians; "
              f"load average {os.getloadavg()[0]:.1f}\n")
    if cython is None:
        out.write("the Cython extension is not built: only the pure core is measured\n")
    for shape in shapes:
        found = payloads.shape(shape)
        out.write(f"\nshape {shape}: {found.code} ({found.payload_bytes} B pickled)\n")
        times = timed_rounds(runs(shape, count), rounds)
        out.write(f"  {'contender':<22}{'msg/s (median)':>16}\n")
        for name, seconds in times.items():
            out.write(f"  {name:<22}{rate(seconds, count):>16,.0f}\n")
        out.write(f"  {'ratio (median of per-round ratios)':<46}{'':>8}  target\n")
        for label, numerator, denominator, target in RATIOS:
            if numerator in times and denominator in times:
                out.write(f"  {label:<46}{median_ratio(times, numerator, denominator):>8.2f}x  {target}\n")
        lute_rate, ratio = lute_ratio(shape, lute_count)
        out.write(f"  {'LUTE one buffer (timed once)':<22}{lute_rate:>16,.0f}   ({lute_count:,} frames)\n")
        out.write(f"  {'Cython decode / LUTE, one buffer':<46}{ratio:>8.2f}x  (LUTE is quadratic: grows with the "
                  "frame count)\n")
    out.write(f"load average at the end {os.getloadavg()[0]:.1f}\n")


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the arguments and print the report."""
    parser = argparse.ArgumentParser(prog="python -m lute_ipc.bench.codec_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="frames per shape (default 100000)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lute-count", type=int, default=20_000, help="frames for LUTE's (quadratic) decoder")
    parser.add_argument("--shape", action="append", choices=list(SHAPES), help="only this shape (repeatable)")
    args = parser.parse_args(argv)
    report(args.count, args.rounds, args.lute_count, args.shape or SHAPES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
