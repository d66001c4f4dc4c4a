"""``python -m lute_ipc.bench.splitter_report``: speed of the stdout stream splitter (the pipe path).

Workloads, all fed in 64 KiB reads as a pipe delivers them:

* **text-heavy**: log lines (some non-ASCII) with a pickled str (what a LUTE Task writes
  for each report) every ~25 lines; Cython vs the pure-Python reference (target >= 10x);
* **pickle-heavy**: pickled result dicts (floats, strings, tuples) and log strings with a
  short print() now and then; Cython vs a bare ``pickle.loads`` loop over the same pickles,
  already cut (target >= 0.8x);
* **one large pickle**: 50 MB vs 5 MB (the same structure, 10x the size): the time ratio
  shows whether the work is linear (target <= 12; quadratic re-parsing would give ~100).

The workload builders are also used by the pytest-benchmark suite (``benchmarks/``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import statistics
import sys
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import _framing_py
from .timing import median_ratio, timed_rounds

try:
    from .. import _framing_c
except ImportError:  # the report says so
    _framing_c = None

READ = 64 * 1024
MIB = 1024 * 1024


def text_heavy_stream(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    parts: List[bytes] = []
    total = 0
    i = 0
    while total < size:
        for _ in range(25):
            line = (f"2026-11-25 22:{i % 60:02d} INFO step {i}: processed {rng.randrange(10**6)} events, "
                    f"é={rng.random():.4f}\n")
            parts.append(line.encode())
            total += len(parts[-1])
            i += 1
        parts.append(pickle.dumps(f"progress: step {i} done"))  # a LUTE Task pickles str contents
        total += len(parts[-1])
    return b"".join(parts)


def pickle_heavy_objects(size: int, seed: int = 2) -> Tuple[List[bytes], bytes]:
    """The pickles (already cut, for the baseline) and the stream they make with some text."""
    rng = random.Random(seed)
    pickles: List[bytes] = []
    parts: List[bytes] = []
    total = 0
    i = 0
    while total < size:
        obj: Any = {"event": i, "values": [rng.random() for _ in range(rng.randrange(20, 120))],
                    "name": f"run-{i}", "ok": True, "tags": ("a", "b", str(i))}
        if i % 3 == 0:  # a log line, as a LUTE Task pickles str contents
            obj = f"log {i}: " + "x" * rng.randrange(50, 400)
        data = pickle.dumps(obj)
        pickles.append(data)
        parts.append(data)
        total += len(data)
        if i % 50 == 0:
            parts.append(f"print {i}\n".encode())
        i += 1
    return pickles, b"".join(parts)


def large_pickle(size: int) -> bytes:
    count = size // 1000
    rng = random.Random(3)
    return pickle.dumps([rng.randbytes(990) for _ in range(count)], 5)


def splitter_run(impl: ModuleType, stream: bytes) -> Callable[[], int]:
    view = memoryview(stream)

    def run() -> int:
        splitter = impl.MixedStreamSplitter()
        count = 0
        for start in range(0, len(stream), READ):
            count += len(splitter.feed(view[start:start + READ]))
        return count + len(splitter.flush())

    return run


def loads_loop(pickles: List[bytes]) -> Callable[[], int]:
    loads = pickle.loads

    def run() -> int:
        for data in pickles:
            loads(data)
        return len(pickles)

    return run


def loads_loop_kept(pickles: List[bytes], per_read: int) -> Callable[[], int]:
    """The bare loop, but keeping each read's results in a list as any feed() API must."""
    loads = pickle.loads

    def run() -> int:
        kept: List[Any] = []
        for data in pickles:
            kept.append(loads(data))
            if len(kept) >= per_read:
                kept = []
        return len(pickles)

    return run




def implementations() -> List[ModuleType]:
    """The twins available, the Cython one first."""
    return [m for m in (_framing_c, _framing_py) if m is not None]


def report(rounds: int, size: int) -> None:
    print(f"lute_ipc splitter benchmark: {size // MIB} MiB streams in {READ // 1024} KiB reads, "
          f"{rounds} interleaved rounds, medians; load average {os.getloadavg()[0]:.1f}")
    if _framing_c is None:
        print("  the Cython extension is not built: only the pure-Python reference is measured")
    impl = _framing_c or _framing_py

    text = text_heavy_stream(size)
    contenders: Dict[str, Callable[[], Any]] = {"py": splitter_run(_framing_py, text)}
    if _framing_c is not None:
        contenders["c"] = splitter_run(_framing_c, text)
    times = timed_rounds(contenders, rounds=max(3, rounds // 2))
    for name, runs in times.items():
        print(f"  text-heavy   {name:>6}: {statistics.median(runs) * 1000:8.1f} ms  "
              f"({len(text) / MIB / statistics.median(runs):7.1f} MiB/s)")
    if _framing_c is not None:
        print(f"  text-heavy   Cython vs pure reference: {median_ratio(times, 'py', 'c'):6.1f}x faster (target >= 10x)")

    pickles, stream = pickle_heavy_objects(size)
    per_read = max(1, round(len(pickles) * READ / len(stream)))
    times = timed_rounds({"loads": loads_loop(pickles), "kept": loads_loop_kept(pickles, per_read),
                         "split": splitter_run(impl, stream)}, rounds=rounds)
    for name, runs in times.items():
        print(f"  pickle-heavy {name:>6}: {statistics.median(runs) * 1000:8.1f} ms  ({len(pickles)} pickles)")
    print(f"  pickle-heavy {impl.__name__.rsplit('.', 1)[-1]} split vs bare pickle.loads loop: "
          f"{median_ratio(times, 'loads', 'split'):5.2f}x speed (target >= 0.8x)")
    print(f"  pickle-heavy   (context) loop keeping each read's {per_read} results vs bare loop: "
          f"{median_ratio(times, 'loads', 'kept'):5.2f}x; "
          f"split vs that loop: {median_ratio(times, 'kept', 'split'):5.2f}x")

    big, small = large_pickle(50_000_000), large_pickle(5_000_000)
    times = timed_rounds({"50MB": splitter_run(impl, big), "5MB": splitter_run(impl, small)}, rounds=rounds)
    for name, runs in times.items():
        print(f"  one pickle   {name:>6}: {statistics.median(runs) * 1000:8.1f} ms")
    print(f"  one pickle   time(50 MB) / time(5 MB): {median_ratio(times, '50MB', '5MB'):5.1f} "
          "(target <= 12, linear = 10)")
    if impl is _framing_c:
        times = timed_rounds({"50MB": splitter_run(_framing_py, big), "5MB": splitter_run(_framing_py, small)},
                            rounds=max(3, rounds // 2))
        print(f"  one pickle   pure reference time(50 MB) / time(5 MB): {median_ratio(times, '50MB', '5MB'):5.1f}")


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the arguments and print the report."""
    parser = argparse.ArgumentParser(prog="python -m lute_ipc.bench.splitter_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size-mib", type=int, default=64)
    args = parser.parse_args(argv)
    report(args.rounds, args.size_mib * MIB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
