"""The ``lute-ipc`` / ``python -m lute_ipc`` command line: ``demo`` and ``info``.

Subcommands are entries of :data:`COMMANDS`. A new one is one more entry; every
``configure`` runs on each invocation, so it only declares arguments, and ``run`` imports
the heavy module, keeping ``python -m lute_ipc --help`` fast. For the planned ``bench``
(not registered yet)::

    def _configure_bench(parser):            # declare the arguments only
        parser.add_argument("--quick", action="store_true")

    def _run_bench(args) -> int:             # import lazily, do the work, return the exit code
        from .bench import run
        return run(args)

    COMMANDS.append(Command("bench", "measure decode/transport speed", _configure_bench, _run_bench))

:func:`main` never raises ``SystemExit``: it returns the exit code (0 success, 1 failure,
2 bad arguments, 130 interrupted). Bad arguments give one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

__all__ = ["main", "Command", "COMMANDS"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _UsageFailure(Exception):
    """A bad command line: the one-line message to print."""


class _ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line and never calls ``sys.exit``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageFailure(f"{self.prog}: error: {message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` does the work and returns an exit code."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------- info
def _configure_info(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Print the version, the framing implementation in use, pyzmq/libzmq versions "
                          "and the transport defaults the environment gives a SocketCommunicator.")


def _run_info(args: argparse.Namespace) -> int:
    from . import __version__, env, framing

    out = sys.stdout
    ok = True
    out.write(f"lute_ipc {__version__} ({os.path.dirname(os.path.abspath(__file__))})\n")
    out.write(f"python {sys.version.split()[0]} ({sys.executable})\n")
    out.write(f"implementation: {framing.IMPLEMENTATION} ({framing.IMPLEMENTATION_REASON})\n")
    for line in _pure_core_explanation(framing.IMPLEMENTATION, framing.IMPLEMENTATION_REASON):
        out.write(f"  {line}\n")
    try:
        import zmq

        out.write(f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}\n")
        have_zmq = True
    except ImportError:
        out.write("pyzmq: not installed (raw sockets only)\n")
        have_zmq = False

    rows: List[Tuple[str, str, str]] = []
    use_zmq_env = os.environ.get(env.USE_ZMQ)
    use_zmq = env.default_use_zmq()
    why = f"LUTE_USE_ZMQ={use_zmq_env!r}" if use_zmq_env is not None else \
        f"LUTE_USE_ZMQ unset, pyzmq {'importable' if have_zmq else 'missing'}"
    rows.append(("socket kind", "ZeroMQ (PUSH/PULL)" if use_zmq else "raw sockets", why))
    tcp = env.use_tcp()
    rows.append(("address family", "TCP" if tcp else "Unix socket",
                 "LUTE_USE_TCP is set" if tcp else "LUTE_USE_TCP unset"))
    path = env.socket_path()
    rows.append(("LUTE_SOCKET", path or "unset", "" if path else "the Executor creates a private 0700 directory"))
    try:
        port = env.port()
        rows.append(("LUTE_PORT", str(port) if port is not None else "unset",
                     "" if port is not None else "with TCP the Executor binds a free port"))
    except Exception as exc:
        ok = False
        rows.append(("LUTE_PORT", "INVALID", str(exc)))
    host = env.bind_host()
    rows.append(("bind host (TCP)", host or "all interfaces", "LUTE_BIND_HOST" if host else
                 "LUTE_BIND_HOST unset, as LUTE; prefer 127.0.0.1 for local Tasks"))
    rows.append(("authentication", "required" if tcp else "off (same-user socket)",
                 "TCP: HMAC-SHA256 per frame" if tcp else "Unix socket in a private directory"))
    rows.append(("LUTE_IPC_KEY", "set (never shown)" if os.environ.get(env.IPC_KEY) else "unset",
                 "" if os.environ.get(env.IPC_KEY) else "the Executor generates one per run"))
    rows.append(("LUTE_EXECUTOR_HOST", env.executor_host() or "unset",
                 "" if env.executor_host() else "the Executor exports its hostname"))
    try:
        ssh = env.ssh_options()
        rows.append(("LUTE_SSH_OPTIONS", " ".join(ssh) if ssh else "unset", "cross-host Unix socket tunnel"))
    except Exception as exc:
        ok = False
        rows.append(("LUTE_SSH_OPTIONS", "INVALID", str(exc)))
    try:
        from .transport.limits import frame_limit

        limit = frame_limit(None)
        source = env.MAX_FRAME_SIZE if env.max_frame_size() is not None else "default"
        rows.append(("max frame size", f"{limit} bytes ({limit / (1024 * 1024):g} MiB)", source))
    except Exception as exc:
        ok = False
        rows.append((env.MAX_FRAME_SIZE, "INVALID", str(exc)))
    out.write("transport defaults (from the environment, as SocketCommunicator resolves them):\n")
    width = max(len(row[0]) for row in rows)
    for name, value, note in rows:
        out.write(f"  {name:<{width}}  {value}" + (f"  ({note})" if note else "") + "\n")
    return EXIT_OK if ok else EXIT_FAILURE


def _pure_core_explanation(implementation: str, reason: str) -> List[str]:
    """Why the pure-Python core runs and what to do about it (nothing when the Cython core runs)."""
    if implementation != "python":
        return []
    if os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0"):
        return ["chosen with LUTE_IPC_PURE_PYTHON (unset it to use the Cython extension, if it is built)"]
    package = os.path.dirname(os.path.abspath(__file__))
    built = sorted(name for name in os.listdir(package) if name.startswith("_framing_c."))
    lines = [f"not chosen: the Cython extension lute_ipc._framing_c did not load ({reason})"]
    if built:
        lines.append(f"  found {', '.join(built)} in {package}, but it could not be imported "
                     f"(built for another Python?)")
    else:
        lines.append(f"  no compiled _framing_c module in {package}: this install was built without it")
    lines.append("  fix: reinstall with a C compiler and the Python headers, or set LUTE_IPC_PURE_PYTHON=1 "
                 "to choose the pure core (and silence the import warning)")
    return lines


# ---------------------------------------------------------------------- demo
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0 or value > 10_000_000:
        raise argparse.ArgumentTypeError(f"expected 0..10000000, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Run an Executor and a real Task subprocess (python -m lute_ipc._demo_task) end to "
                          "end: signals and print() output over the pipes; data, text reports and results "
                          "(lute_ipc.task.report) and log lines (SocketLogHandler) over the Task's one "
                          "persistent socket connection. Exits 0 when every message arrived, in order (the "
                          "log line the Task flushes before its result included).")
    parser.add_argument("--messages", type=_positive_int, default=20_000, metavar="N",
                        help="data messages the Task sends (default: 20000)")
    parser.add_argument("--tcp", action="store_true",
                        help="TCP on 127.0.0.1 with authenticated frames instead of a Unix socket")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--zmq", dest="use_zmq", action="store_const", const=True, default=None,
                      help="ZeroMQ PUSH/PULL (default when pyzmq is installed, unless LUTE_USE_ZMQ=0)")
    kind.add_argument("--raw", dest="use_zmq", action="store_const", const=False,
                      help="raw stream sockets")
    parser.add_argument("--timeout", type=_positive_float, default=60.0, metavar="SECONDS",
                        help="stop the Task after this long (default: 60)")
    parser.add_argument("--fail", action="store_true",
                        help="make the Task fail, to see a TASK_FAILED run (the demo then exits with 1)")


class _Console:
    """Prints event lines and one live progress line (rewritten in place on a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._progress_shown = False
        self._last_draw = time.monotonic()

    def line(self, text: str) -> None:
        if self._progress_shown and self.live:
            self.stream.write("\r\x1b[2K")
            self._progress_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def restart_clock(self) -> None:
        """Count the delay before the next progress line from now."""
        self._last_draw = time.monotonic()

    def progress(self, make_text: Callable[[], str], force: bool = False) -> None:
        """Draw ``make_text()`` if the last draw is old enough (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_draw < (0.1 if self.live else 0.5):
            return
        self._last_draw = now
        text = make_text()
        if self.live:
            self.stream.write("\r\x1b[2K" + text)
            self._progress_shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end_progress(self) -> None:
        if self._progress_shown and self.live:
            self.stream.write("\n")
            self._progress_shown = False
        self.stream.flush()


class DemoChecks:
    """What the demo's Executor checks, as plain code: feed it the events in arrival order,
    then :meth:`problems` lists what went wrong (empty: every message arrived, in order)."""

    def __init__(self, total: int, done_line: str) -> None:
        self.total = total
        self.done_line = done_line
        self.data = 0
        self.in_order = True
        self.done_seen = False
        self.result_before_done = False

    def data_message(self, index: int) -> None:
        """A data message ``{"i": index, ...}`` arrived."""
        if index != self.data:
            self.in_order = False
        self.data += 1

    def log_line(self, text: object) -> None:
        if isinstance(text, str) and text.endswith(self.done_line):
            self.done_seen = True

    def result(self) -> None:
        """A TASK_RESULT arrived: the Task flushed its "done" log line before reporting it."""
        if not self.done_seen:
            self.result_before_done = True

    def problems(self, outcome: object, returncode: Optional[int], results: List[Any],
                 expected_result: Any) -> List[str]:
        """For a run that should succeed: what went wrong (empty when nothing did)."""
        from .executor import Outcome

        if outcome is not Outcome.DONE:
            return [f"the Task ended {outcome} (exit code {returncode})"]
        if self.data != self.total:
            return [f"{self.data} of {self.total} data messages arrived"]
        found = []
        if not self.in_order:
            found.append("data messages arrived out of order")
        if self.result_before_done:
            found.append(f"the result arrived before the log line {self.done_line!r} the Task flushed before it")
        if results != [expected_result]:
            found.append(f"result {results!r} != {[expected_result]!r}")
        return found


def _run_demo(args: argparse.Namespace) -> int:
    from . import framing
    from ._demo_task import DONE_LINE, checksum
    from .executor import Outcome, TaskRunner
    from .message import Message
    from .sockets import USE_ZMQ

    console = _Console(sys.stdout)
    total = args.messages
    use_zmq = USE_ZMQ if args.use_zmq is None else args.use_zmq
    if use_zmq:
        try:
            import zmq  # noqa: F401
        except ImportError:
            sys.stderr.write(f"{args.prog} demo: error: --zmq needs pyzmq (pip install pyzmq), or use --raw\n")
            return EXIT_FAILURE
    cmd = [sys.executable, "-m", "lute_ipc._demo_task", "--messages", str(total)]
    if args.fail:
        cmd.append("--fail")
    options: Dict[str, Any] = {"bind_host": "127.0.0.1"} if args.tcp else {}
    runner = TaskRunner(cmd, timeout=args.timeout, use_zmq=use_zmq, use_tcp=args.tcp, socket_options=options)
    transport = f"{'ZeroMQ' if use_zmq else 'raw sockets'} over " + \
        ("TCP 127.0.0.1 (authenticated frames)" if args.tcp else "a private Unix socket")
    console.line(f"lute_ipc demo: Executor pid {os.getpid()}, core: {framing.IMPLEMENTATION}, "
                 f"socket: {transport}")
    console.line(f"Task: python -m lute_ipc._demo_task --messages {total}" + (" --fail" if args.fail else ""))

    state: Dict[str, Any] = {"data": 0, "first": None, "last": None}
    checks = DemoChecks(total, DONE_LINE)

    def show_signal(msg: Message) -> None:
        console.line(f"[signal] {msg.signal}")

    def show_log(msg: Message) -> None:
        checks.log_line(msg.contents)
        console.line(f"[log]    {msg.contents}")

    def show_result(msg: Message) -> None:
        checks.result()
        console.line(f"[result] {msg.contents!r}")

    def other(msg: Message) -> None:
        contents = msg.contents
        if isinstance(contents, dict) and "i" in contents:
            checks.data_message(contents["i"])
            now = time.monotonic()
            if state["first"] is None:
                state["first"] = now
                console.restart_clock()  # first progress line once there is a rate to show
            state["last"] = now
            state["data"] += 1
            console.progress(lambda: _progress_text(state, total))
        elif isinstance(contents, str):
            console.line(f"[text]   {contents.rstrip()}")
        else:
            console.line(f"[other]  {msg!r}")

    for name in ("TASK_STARTED", "TASK_DONE", "TASK_FAILED", "TASK_CANCELLED", "TASK_STOPPED"):
        runner.on_signal(name, show_signal)
    runner.on_signal("TASK_LOG", show_log)
    runner.on_signal("TASK_RESULT", show_result)
    runner.on_message(other)
    try:
        result = runner.run()
    except KeyboardInterrupt:
        console.end_progress()
        sys.stderr.write(f"{args.prog} demo: interrupted; the Task was stopped\n")
        return EXIT_INTERRUPTED
    if total:
        console.progress(lambda: _progress_text(state, total), force=True)
    console.end_progress()
    console.line(f"summary: {result.outcome}, exit code {result.returncode}, {result.messages} messages "
                 f"({result.pipe_messages} pipe, {result.socket_messages} socket), {result.protocol_errors} "
                 f"protocol errors, {result.duration:.2f} s with the Task's start-up")
    problems: List[str] = []
    if args.fail:
        if result.outcome is not Outcome.FAILED:
            problems.append(f"expected a failed Task, got {result.outcome}")
        else:
            problems.append("the Task failed, as asked with --fail (TASK_FAILED and exit code 1 were reported)")
    else:
        problems = checks.problems(result.outcome, result.returncode, result.results,
                                   {"messages": total, "checksum": checksum(total)})
    if problems:
        sys.stderr.write(f"{args.prog} demo: error: " + "; ".join(problems) + "\n")
        return EXIT_FAILURE
    console.line("OK: every message arrived, in order")
    return EXIT_OK


def _progress_text(state: Dict[str, Any], total: int) -> str:
    first, last = state["first"], state["last"]
    elapsed = last - first if first is not None else 0.0
    rate = state["data"] / elapsed if elapsed > 0 else 0.0
    return f"progress: {state['data']}/{total} data messages, {rate:,.0f} msg/s"


# ---------------------------------------------------------------------- bench
def _configure_bench(parser: argparse.ArgumentParser) -> None:
    from .bench.options import configure

    configure(parser)


def _run_bench(args: argparse.Namespace) -> int:
    from .bench.main import EXIT_USAGE, run

    plot = getattr(args, "plot", None)
    before = _mtime_ns(plot) if plot else None
    status = run(args)
    if plot and status != EXIT_USAGE and (_mtime_ns(plot) is None or _mtime_ns(plot) == before):  # said already
        # Asked for a plot and did not get one (e.g. matplotlib missing): not a success.
        sys.stderr.write(f"{args.prog} bench: error: --plot {plot} was not written (see 'plot skipped' above)\n")
        return max(status, EXIT_FAILURE)
    return status


def _mtime_ns(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


# ---------------------------------------------------------------------- lute-shim
def _configure_lute_shim(parser: argparse.ArgumentParser) -> None:
    from .lute_shim import configure_command

    configure_command(parser)


def _run_lute_shim(args: argparse.Namespace) -> int:
    from .lute_shim import run_command

    return run_command(args)


# ---------------------------------------------------------------------- registry and main
COMMANDS: List[Command] = [
    Command("demo", "run an Executor and a Task subprocess end to end", _configure_demo, _run_demo),
    Command("info", "show version, implementation, pyzmq and transport defaults", _configure_info, _run_info),
    Command("bench", "compare lute_ipc's speed with the alternatives (tables, JSON, plot)", _configure_bench,
            _run_bench),
    Command("lute-shim", "make an installed LUTE use lute_ipc: install | remove | status", _configure_lute_shim,
            _run_lute_shim),
]
"""The subcommands, in ``--help`` order. Add one by appending a :class:`Command`."""


def build_parser(prog: str = "lute-ipc") -> argparse.ArgumentParser:
    """The argument parser for every command in :data:`COMMANDS`."""
    from . import __version__

    parser = _Parser(prog=prog, description="lute_ipc: fast, safe IPC between a LUTE Executor and its "
                                                  "Tasks.")
    parser.add_argument("--version", action="version", version=f"lute_ipc {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show lute_ipc's own log messages (-v: INFO, -vv: DEBUG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for command in COMMANDS:
        child = sub.add_parser(command.name, help=command.help, description=command.help)
        command.configure(child)
        child.set_defaults(_run=command.run)
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = "lute-ipc") -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except _UsageFailure as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    except _ParserExit as exc:  # --help, --version
        return exc.status
    args.prog = prog
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which exited
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_FAILURE
    except Exception as exc:  # one readable line, not a traceback, for errors we explain
        from .errors import LuteIPCError

        if not isinstance(exc, LuteIPCError) or args.verbose:
            raise
        sys.stderr.write(f"{prog} {args.command}: error: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILURE
