"""The ``bench`` command's arguments, its scenarios and contenders, and how much each run moves.

Light on purpose: the CLI imports this module for every ``--help``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Dict, Tuple

SHAPE_NAMES = ("text", "objects", "64KiB", "1MiB")
"""The message shapes (:data:`lute_ipc.bench.payloads.SHAPES`), named here so ``--help`` imports nothing."""

SCENARIOS: Dict[str, str] = {
    "decode-buffer": "(a) decode only, the whole stream in one buffer (in memory)",
    "decode-8k": "(a) decode only, the stream in 8 KiB chunks (in memory)",
    "stream-unix": "(b) Task process -> Executor, one persistent connection, Unix socket",
    "stream-tcp": "(b) Task process -> Executor, one persistent connection, TCP loopback",
    "lute-per-message": "(c) what a LUTE Task does per message: a new SocketCommunicator(Party.TASK), "
                        "delayed_setup(), write(), clear_communicator(); Unix socket",
    "lute-per-message-tcp": "(c) the same over TCP loopback (lute_ipc tags every record with HMAC-SHA256)",
    "pipe-mixed": "(d) Task stdout pipe, each pickle followed by a print()ed line",
}
"""Scenario id -> description, in report order."""

DECODE = ("decode-buffer", "decode-8k")
SOCKETS = ("stream-unix", "stream-tcp", "lute-per-message", "lute-per-message-tcp")
PER_MESSAGE = ("lute-per-message", "lute-per-message-tcp")
PIPES = ("pipe-mixed",)


@dataclass(frozen=True)
class Contender:
    """One contender: ``kind`` is ``lute_ipc``, ``alternative`` or ``reference`` (a ceiling/floor, not ranked)."""

    name: str
    label: str
    kind: str
    scenarios: Tuple[str, ...]
    help: str
    fragile: str = ""
    """Why this baseline may fail on a busy machine (its failures are reported, not an error of the run)."""


CONTENDERS: Tuple[Contender, ...] = (
    Contender("lute_ipc-cython", "lute_ipc Cython", "lute_ipc", DECODE + SOCKETS + PIPES,
              "lute_ipc with the compiled core; sockets: raw SocketCommunicator, Executor reads with read_many"),
    Contender("lute_ipc-cython-read", "lute_ipc Cython, read()", "lute_ipc", SOCKETS,
              "the same, Executor reads one message per read() (LUTE's API)"),
    Contender("lute_ipc-cython-result", "lute_ipc Cython, TASK_RESULT", "lute_ipc", SOCKETS,
              "the same with signal TASK_RESULT, which the Task's writer flushes at once (no batching)"),
    Contender("lute_ipc-cython-zmq", "lute_ipc Cython, ZeroMQ", "lute_ipc", PER_MESSAGE,
              "lute_ipc over ZeroMQ (LUTE_USE_ZMQ's default when pyzmq is installed)"),
    Contender("lute_ipc-pure", "lute_ipc pure", "lute_ipc", DECODE + SOCKETS + PIPES,
              "lute_ipc with LUTE_IPC_PURE_PYTHON=1 (Executor and Task)"),
    Contender("lute", "LUTE algorithm", "alternative", DECODE + SOCKETS,
              "LUTE's framing and reader thread re-expressed from its behaviour (quadratic: fewer messages)"),
    Contender("lute-lcls", "LUTE 0.3.0, raw", "alternative", ("lute-per-message",),
              "the real lute-lcls SocketCommunicator on both sides, raw Unix socket (when importable)",
              "LUTE gives the Task's socket a 10 ms timeout: when the Executor is slower, write() raises"),
    Contender("lute-lcls-zmq", "LUTE 0.3.0, ZeroMQ", "alternative", ("lute-per-message",),
              "the real lute-lcls SocketCommunicator on both sides over ZeroMQ, LUTE's default (when importable)",
              "LUTE gives its sockets a 10 ms timeout"),
    Contender("mp-connection", "multiprocessing.connection", "alternative", SOCKETS,
              "Listener/Client send()/recv() of the same Message objects (backlog SOMAXCONN); a connection "
              "per message in lute-per-message"),
    Contender("pyzmq", "pyzmq PUSH/PULL", "alternative", SOCKETS,
              "bare send_pyobj()/recv_pyobj() of the same Message objects"),
    Contender("msgpack", "msgpack Unpacker", "alternative", DECODE,
              "msgpack framing of [contents, signal]; yields tuples, builds no Message"),
    Contender("pickle-loads", "pickle.loads floor", "reference", DECODE,
              "bare pickle.loads over payloads already cut: what any pickle decoder pays"),
    Contender("pickle-loads-each", "pickle.loads, each dropped", "reference", ("decode-buffer",),
              "the same loop dropping each result before the next, as a read() loop drops its messages (no "
              "list of results for the garbage collector to walk): the floor of the objects target"),
    Contender("raw-bytes", "raw byte loop", "reference", SOCKETS + PIPES,
              "recv_into/os.read loop of the same bytes lute_ipc sends: the bytes/s ceiling"),
)
CONTENDER_BY_NAME = {c.name: c for c in CONTENDERS}


@dataclass(frozen=True)
class Plan:
    """How much one trial moves in a mode: about ``target_bytes`` of payload, within [min, max] messages."""

    rounds: int
    decode_bytes: int
    decode_limits: Tuple[int, int]
    stream_bytes: int
    stream_limits: Tuple[int, int]
    per_message_bytes: int
    per_message_limits: Tuple[int, int]
    lute_quadratic_bytes: float
    """LUTE's reader and one-buffer decoder copy ~ n * stream bytes: n is capped so that stays below this."""


PLANS: Dict[str, Plan] = {
    "full": Plan(5, 16 << 20, (32, 100_000), 128 << 20, (128, 100_000), 8 << 20, (48, 1_000), 3e9),
    "quick": Plan(3, 2 << 20, (8, 10_000), 16 << 20, (16, 10_000), 1 << 20, (4, 120), 3e8),
    "smoke": Plan(1, 256 << 10, (2, 300), 256 << 10, (2, 200), 64 << 10, (2, 10), 2e7),
}


def message_count(plan: Plan, scenario: str, contender: str, size: int, frame_bytes: int) -> int:
    """Messages one trial of ``contender`` moves in ``scenario``, messages of ``size`` payload bytes."""
    if scenario in DECODE:
        target, (low, high) = plan.decode_bytes, plan.decode_limits
    elif scenario in PER_MESSAGE:
        target, (low, high) = plan.per_message_bytes, plan.per_message_limits
    else:
        target, (low, high) = plan.stream_bytes, plan.stream_limits
    count = max(low, min(high, target // size))
    if contender != "lute" or scenario in PER_MESSAGE:
        return count
    # LUTE's decoder re-slices the rest of its buffer after every frame (~ n * stream bytes),
    # re-joins a partial frame to every chunk (~ frame**2 / 8 KiB per frame), and its reader
    # grows one bytes object per connection (~ stream**2 / 8 KiB): keep those under budget.
    budget = plan.lute_quadratic_bytes
    if scenario == "decode-8k":
        cap = int(budget * 8192 / frame_bytes ** 2 / 8)
    else:
        cap = int((budget / frame_bytes) ** 0.5)
        if scenario.startswith("stream"):
            cap = min(cap, int((budget * 8192) ** 0.5 / frame_bytes))
    return max(2, min(count, cap))


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``bench`` arguments (imports nothing heavy)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Compare lute_ipc with the alternatives, in one process tree, for four message shapes: text (str +\n"
        "signal), objects (dict), 64 KiB and 1 MiB bytes. Contenders run in interleaved rounds; the table\n"
        "shows medians (messages/s, MB/s of pickled message) and each one's ratio to the best alternative,\n"
        "then the issue's targets next to the measured ratios. Example: regenerate docs/benchmarks.md with\n"
        "  python -m lute_ipc bench --plot docs/benchmarks.png --markdown docs/benchmarks.md")
    parser.epilog = ("scenarios:\n" + "".join(f"  {k:<18}{v}\n" for k, v in SCENARIOS.items())
                     + "\ncontenders:\n" + "".join(f"  {c.name:<24}{c.help}\n" for c in CONTENDERS)
                     + "\nEnd to end, the clock runs from the Task process's first write to the Executor "
                       "holding the last\n"
                       "message. Optional: msgpack and matplotlib (pip install 'lute-ipc[bench]'); without them that\n"
                       "contender or the plot is skipped with a message. Exit code: 0, 1 if a measurement failed,\n"
                       "2 for bad arguments.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer messages, three rounds: finishes in under a minute")
    mode.add_argument("--smoke", action="store_true", help="every scenario, tiny runs, one round: checks the command "
                      "works (seconds; the figures mean nothing)")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help="interleaved rounds per measurement (default: 5; --quick 3; --smoke 1)")
    parser.add_argument("--json", metavar="FILE", help="write every measurement, the machine and the plan as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="write throughput vs payload size (log axes) as a PNG "
                        "(needs matplotlib; skipped with a message when it is missing)")
    parser.add_argument("--markdown", metavar="FILE.md", help="write the report page (method, machine, tables, the "
                        "plot, findings), e.g. docs/benchmarks.md; a <!-- notes --> section already in FILE is kept")
    parser.add_argument("--from-json", metavar="FILE", help="measure nothing: print the tables of a JSON file written "
                        "by --json, and write --plot/--markdown from it")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), metavar="NAME",
                        help="run only this scenario (repeatable): " + ", ".join(SCENARIOS))
    parser.add_argument("--contender", action="append", choices=[c.name for c in CONTENDERS], metavar="NAME",
                        help="run only this contender (repeatable): " + ", ".join(c.name for c in CONTENDERS))
    parser.add_argument("--pure", action="store_true", help="lute_ipc contenders: the pure-Python core only")
    parser.add_argument("--shape", action="append", choices=list(SHAPE_NAMES), metavar="NAME",
                        help="message shape (repeatable): " + ", ".join(SHAPE_NAMES) + " (default: all)")
