"""``python -m lute_ipc.bench.callgrind``: deterministic instruction counts of decoding, for any noisy machine.

Timing on a shared machine drifts; the number of instructions a decode executes does not.
For each message shape (text, objects) this runs, under ``valgrind --tool=callgrind``, a
child process that builds 10,000 frames of the shape and decodes them once with one
decoder:

* ``cython``: ``_framing_c.FrameDecoder().feed(stream)`` (the whole stream, one buffer);
* ``pure``: ``_framing_py.FrameDecoder().feed(stream)``;
* ``pickle.loads``: a bare loop over the payloads already cut out of the stream;

and once with no decoder (``baseline``: the same start-up, imports and set-up). The
decoder's count is its run minus the baseline, so interpreter start-up and building the
frames do not count. ``PYTHONHASHSEED=0`` fixes hashing; two runs usually agree within 0.1%,
whatever the machine's load, but one run in four of a review differed by 10% on one row (text,
Cython: 6,187 instructions per frame against 5,611-5,612 in every other run; neither stale
``.pyc`` files nor load reproduced it): run it twice and trust the counts that agree.
The same is done for encoding (``--encode``, on by default): the Task's side, where a
message becomes a frame appended to a send buffer:

* ``cython-encode`` / ``pure-encode``: ``append_frame(buffer, msg)`` of each twin, for the
  same 10,000 messages;
* ``pickle.dumps``: a bare loop pickling the same messages;
* ``cython-write`` / ``pure-write``: ``FrameWriter.write(msg)`` with each core (the whole
  per-message path of a Task's ``write()`` below the communicator: lock, checks, frame, frame
  limit, batching decision, and a send per 64 KiB into a link that keeps nothing; the flush
  interval is an hour, so the clock decides nothing and every run takes the same path). Their
  baseline imports the transport and makes the writer too, and writes nothing.

Output: a table of instructions per frame and ratios (``--json`` too).
Needs ``valgrind`` (Debian: ``apt-get install valgrind``); several minutes of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, TextIO

DECODERS = ("cython", "pure", "pickle.loads")
ENCODERS = ("cython-encode", "pure-encode", "pickle.dumps", "cython-write", "pure-write")
SHAPES = ("text", "objects")
DEFAULT_COUNT = 10_000


def child(decoder: str, shape: str, count: int) -> int:
    """Build the frames of ``shape`` and decode them once with ``decoder`` (``baseline``: not at all)."""
    import pickle

    from .. import _framing_py
    from . import payloads

    try:
        from .. import _framing_c
    except ImportError:
        _framing_c = None  # the cython row is then reported as missing
    stream = payloads.frame_stream(shape, count, _framing_py.encode_frame)
    cut = payloads.pickled_payloads(shape, count)
    msgs = payloads.messages(shape, count)
    got = -1
    buffer = bytearray()
    if decoder == "cython" and _framing_c is not None:
        got = len(_framing_c.FrameDecoder().feed(stream))
    elif decoder == "pure":
        got = len(_framing_py.FrameDecoder().feed(stream))
    elif decoder == "pickle.loads":
        loads = pickle.loads
        got = len([loads(payload) for payload in cut])
    elif decoder == "cython-encode" and _framing_c is not None:
        append = _framing_c.append_frame
        got = len([append(buffer, msg) for msg in msgs])
    elif decoder == "pure-encode":
        append = _framing_py.append_frame
        got = len([append(buffer, msg) for msg in msgs])
    elif decoder == "pickle.dumps":
        dumps = pickle.dumps
        got = len([dumps(msg) for msg in msgs])
    elif decoder.endswith(("-write", "-write-baseline")):  # the baseline: the same imports and writer, no write
        core = "cython" if decoder.startswith("cython") else "python"
        written = _write(msgs if decoder.endswith("-write") else [], core)
        got = count if decoder.endswith("-baseline") and written == 0 else written
    elif decoder == "baseline":
        got = count
    return 0 if got == count else 3


class _KeepNothing:
    """A link (interface in lute_ipc.transport) whose sends go nowhere: only the writer is measured."""

    max_message = None
    queues_in_process = False

    def __init__(self) -> None:
        from ..transport import process

        self.pid = process.pid()

    def send(self, pieces: List[object], messages: int) -> None:
        """Keeps nothing."""

    def confirm(self, timeout: Optional[float] = None) -> None:
        """Nothing to confirm."""

    def close(self) -> None:
        """Nothing to close."""


def _write(msgs: Sequence[object], core: str) -> int:
    """``FrameWriter.write`` every message with ``core`` (-1 when that core is not the one in use)."""
    from .. import framing
    from ..transport.writer import FrameWriter

    if core != framing.IMPLEMENTATION:
        return -1
    writer = FrameWriter(_KeepNothing(), flush_interval=3600.0)
    write = writer.write
    for msg in msgs:
        write(msg)  # type: ignore[arg-type]
    return len(msgs)


def _instructions(path: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as out:
        for line in out:
            found = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if found:
                return int(found.group(1))
    raise RuntimeError(f"no instruction total in {path}")


def count_instructions(decoder: str, shape: str, count: int, directory: str) -> Optional[int]:
    """Instructions of one child run under callgrind (None when the child failed)."""
    out_file = os.path.join(directory, f"callgrind.{shape}.{decoder}.out")
    env = dict(os.environ, PYTHONHASHSEED="0", LUTE_IPC_PURE_PYTHON="1" if decoder.startswith("pure-write") else "0")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", sys.executable, "-m",
               "lute_ipc.bench.callgrind", "--child", decoder, shape, str(count)]
    proc = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"{shape} {decoder}: exit {proc.returncode}\n{proc.stderr[-800:]}\n")
        return None
    return _instructions(out_file)


def measure(count: int, shapes: Sequence[str] = SHAPES, progress: Optional[TextIO] = None,
            runs: Sequence[str] = DECODERS + ENCODERS) -> Dict[str, Dict[str, Optional[int]]]:
    """``{shape: {decoder or encoder: instructions of handling count frames}}`` (baseline subtracted)."""
    progress = sys.stderr if progress is None else progress
    results: Dict[str, Dict[str, Optional[int]]] = {}
    with tempfile.TemporaryDirectory(prefix="lute-ipc-callgrind-") as directory:
        for shape in shapes:
            base = count_instructions("baseline", shape, count, directory)
            results[shape] = {}
            for decoder in runs:
                total = count_instructions(decoder, shape, count, directory)
                # a write row's baseline also imports the transport and makes the writer
                start = count_instructions(decoder + "-baseline", shape, count, directory) \
                    if decoder.endswith("-write") else base
                results[shape][decoder] = None if total is None or start is None else total - start
                progress.write(f"  {shape:<8} {decoder:<13} {results[shape][decoder]}\n")
                progress.flush()
    return results


def _section(results: Dict[str, Dict[str, Optional[int]]], count: int, names: Sequence[str], bare: str,
             pure_name: str) -> List[str]:
    lines = [f"{'shape':<9}{'run':<15}{'instr/frame':>12}{'x ' + bare:>16}{'pure / this':>13}", "-" * 65]
    for shape, row in results.items():
        reference, pure = row.get(bare), row.get(pure_name)
        for name in names:
            if name not in row:
                continue
            value = row[name]
            if value is None:
                lines.append(f"{shape:<9}{name:<15}{'-':>12}")
                continue
            vs_bare = f"{value / reference:.2f}x" if reference else "-"
            vs_pure = f"{pure / value:.2f}x" if pure and value else "-"
            lines.append(f"{shape:<9}{name:<15}{value / count:>12,.0f}{vs_bare:>16}{vs_pure:>13}")
    return lines


def table(results: Dict[str, Dict[str, Optional[int]]], count: int) -> List[str]:
    """The report: instructions per frame and ratios to the bare pickle loop and to pure."""
    from .payloads import SHAPE_BY_NAME

    lines = [f"decode of {count:,} frames, one buffer: instructions per frame (callgrind, baseline subtracted)", ""]
    lines += _section(results, count, DECODERS, "pickle.loads", "pure")
    if any(name in row for row in results.values() for name in ENCODERS):
        lines += ["", f"encode of {count:,} messages, append_frame into one send buffer (*-write: the whole "
                  "FrameWriter.write): instructions per frame", ""]
        lines += _section(results, count, ENCODERS, "pickle.dumps", "pure-encode")
    lines += ["", "x pickle.loads / x pickle.dumps: instructions over the bare pickle loop's (< 1: fewer than",
              "pickle alone); pure / this: how many times fewer instructions than the pure-Python twin.", "shapes:"]
    lines += [f"  {shape}: {SHAPE_BY_NAME[shape].code}" for shape in results]
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the measurement and print the table; the exit code is 1 when valgrind is missing."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        return child(args[1], args[2], int(args[3]))
    parser = argparse.ArgumentParser(prog="python -m lute_ipc.bench.callgrind", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="frames per decode (default 10000)")
    parser.add_argument("--shape", action="append", choices=list(SHAPES), help="only this shape (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the counts as JSON")
    parser.add_argument("--no-encode", action="store_true", help="decoding only (no encode rows)")
    options = parser.parse_args(args)
    if shutil.which("valgrind") is None:
        sys.stderr.write("valgrind is not installed (Debian: apt-get install valgrind)\n")
        return 1
    runs = DECODERS if options.no_encode else DECODERS + ENCODERS
    results = measure(options.count, options.shape or SHAPES, runs=runs)
    print("\n".join(table(results, options.count)))
    if options.json:
        with open(options.json, "w", encoding="utf-8") as out:
            json.dump({"count": options.count, "instructions": results}, out, indent=1)
    return 0 if all(v is not None for row in results.values() for v in row.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
