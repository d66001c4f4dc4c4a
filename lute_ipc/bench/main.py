"""``python -m lute_ipc bench``: plan the run, measure in interleaved rounds, write the outputs."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Callable, Dict, List, Optional, TextIO

from .decode import decode_run, decode_trial
from .machine import describe
from .options import CONTENDER_BY_NAME, CONTENDERS, DECODE, PLANS, SCENARIOS, message_count
from .payloads import SHAPE_BY_NAME, shape_label
from .report import Report, Result, print_tables
from .runner import Workers
from .timing import interleaved_rounds

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _selected_contenders(args: argparse.Namespace, report: Report, workers: Workers, out: TextIO) -> List[str]:
    names = list(args.contender or [c.name for c in CONTENDERS])
    if args.pure:
        names = [n for n in names if not n.startswith("lute_ipc-cython")]
    available = []
    for name in names:
        reason = _unavailable(name, workers)
        if reason:
            report.skipped.append({"contender": name, "reason": reason})
            out.write(f"skipped {name}: {reason}\n")
        else:
            available.append(name)
    return available


def _unavailable(name: str, workers: Workers) -> Optional[str]:
    if name == "msgpack":
        try:
            import msgpack  # noqa: F401
        except ImportError:
            return "msgpack is not installed (pip install 'lute-ipc[bench]')"
    if name == "pyzmq" or name.endswith("-zmq"):
        try:
            import zmq  # noqa: F401
        except ImportError:
            return "pyzmq is not installed"
    if name.startswith("lute-lcls"):
        from .lute_lcls import available

        why = available()
        if why:
            return why + "; the re-expressed LUTE algorithm still runs"
    if name.startswith("lute_ipc-cython"):
        try:
            from .. import _framing_c  # noqa: F401
        except ImportError as exc:
            return f"the Cython extension is not built ({exc})"
        if workers.implementation(False) != "cython":
            return "the worker process did not load the Cython core"
    return None


def measure(report: Report, scenarios: List[str], contenders: List[str], shapes: List[str], mode: str,
            rounds: int, workers: Workers, progress: TextIO) -> None:
    """Fill ``report.results`` (and ``report.failures``): every scenario x shape, contenders interleaved."""
    plan = PLANS[mode]
    for scenario in scenarios:
        for shape in shapes:
            names = [n for n in contenders if scenario in CONTENDER_BY_NAME[n].scenarios]
            if not names:
                continue
            size = SHAPE_BY_NAME[shape].payload_bytes
            counts = {n: message_count(plan, scenario, n, size, size + 20) for n in names}
            trials: Dict[str, Callable[[], float]] = {}
            for name in names:
                if scenario in DECODE:
                    run = decode_run(name, "buffer" if scenario == "decode-buffer" else "8k", shape, counts[name])
                    trials[name] = functools.partial(decode_trial, run, counts[name])
                else:
                    trials[name] = workers.trial_callable(scenario, name, shape, counts[name])
            started = time.monotonic()
            times: Dict[str, List[float]] = {}
            failed: Dict[str, str] = {}
            guarded = {name: _guard(name, trial, failed) for name, trial in trials.items()}
            for name, seconds in interleaved_rounds(guarded, rounds).items():
                if name not in failed:
                    times[name] = seconds
            for name, message in failed.items():
                fragile = CONTENDER_BY_NAME[name].fragile
                report.failures.append({"scenario": scenario, "contender": name, "shape": shape, "error": message,
                                        **({"baseline_may_fail": fragile} if fragile else {})})
                progress.write(f"  FAILED {scenario} {shape_label(shape)} {name}: {message}\n")
            for name, seconds in times.items():
                report.results.append(Result(scenario, name, shape, counts[name], seconds, size))
            progress.write(f"  {scenario:<20} {shape_label(shape):>12}: {len(times)} contenders, "
                           f"{time.monotonic() - started:5.1f} s, load {os.getloadavg()[0]:.1f}\n")
            progress.flush()


def _guard(name: str, trial: Callable[[], float], failed: Dict[str, str]) -> Callable[[], float]:
    def run() -> float:
        if name in failed:
            return float("nan")
        try:
            return trial()
        except Exception as exc:  # one failed contender does not stop the others; the exit code says it
            failed[name] = f"{type(exc).__name__}: {exc}"
            return float("nan")
    return run


def run(args: argparse.Namespace, out: TextIO = sys.stdout, progress: TextIO = sys.stderr) -> int:
    """Run the benchmark the arguments describe; returns the exit code."""
    import logging

    logging.getLogger("lute_ipc").setLevel(logging.ERROR)  # no security warnings from the LUTE-style clients
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    rounds = args.rounds if args.rounds is not None else PLANS[mode].rounds
    if rounds < 1 or rounds > 100:
        return _usage_error(args, progress, "--rounds must be 1..100")
    for option in ("json", "plot", "markdown"):  # before measuring: a bad path must not cost the run
        why = _unwritable(getattr(args, option, None))
        if why:
            return _usage_error(args, progress, f"--{option} {getattr(args, option)}: {why}")
    if args.from_json:
        from .report import load_json

        try:
            loaded = load_json(args.from_json)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return _usage_error(args, progress, f"--from-json {args.from_json}: not a report written by --json "
                                f"({type(exc).__name__}: {exc})")
        return _outputs(loaded, args, out, progress)
    scenarios = list(args.scenario or SCENARIOS)
    shapes = [name for name in SHAPE_BY_NAME if name in (args.shape or SHAPE_BY_NAME)]
    report = Report(describe(mode, rounds))
    report.meta["arguments"] = _selection_arguments(args, mode, rounds)
    started = time.monotonic()
    workers = Workers()
    try:
        out.write(f"lute_ipc bench ({mode}): commit {report.meta['commit']}, {report.meta['cpu']}, "
                  f"{report.meta['cpus']} CPUs, python {report.meta['versions']['python']}, {rounds} round(s), "
                  f"load average {report.meta['load_average_start'][0]:.1f}\n")
        contenders = _selected_contenders(args, report, workers, out)
        if not any(scenario in CONTENDER_BY_NAME[name].scenarios for scenario in scenarios for name in contenders):
            return _usage_error(args, progress, _nothing_to_measure(scenarios, contenders))
        report.meta["implementations"] = {"default worker": workers.implementation(False)}
        out.flush()
        measure(report, scenarios, contenders, shapes, mode, rounds, workers, progress)
    finally:
        workers.close()
    report.meta["duration_s"] = round(time.monotonic() - started, 1)
    report.meta["load_average_end"] = list(os.getloadavg())
    report.compute_ratios()
    return _outputs(report, args, out, progress)


def _selection_arguments(args: argparse.Namespace, mode: str, rounds: int) -> List[str]:
    """The arguments that chose what was measured (for the report page's command line)."""
    words = [f"--{mode}"] if mode != "full" else []
    if rounds != PLANS[mode].rounds:
        words += ["--rounds", str(rounds)]
    if args.pure:
        words.append("--pure")
    for option in ("scenario", "contender", "shape"):
        for value in getattr(args, option) or []:
            words += [f"--{option}", value]
    return words


def _error_line(args: argparse.Namespace, progress: TextIO, text: str) -> None:
    progress.write(f"{getattr(args, 'prog', 'lute-ipc')} bench: error: {text}\n")


def _usage_error(args: argparse.Namespace, progress: TextIO, text: str) -> int:
    _error_line(args, progress, text)
    return EXIT_USAGE


def _unwritable(path: Optional[str]) -> Optional[str]:
    """Why ``path`` cannot be written as an output file (None: it can, as far as can be told without writing)."""
    if not path:
        return None
    if os.path.isdir(path):
        return "is a directory"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"its folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "not writable"
    return None


def _nothing_to_measure(scenarios: List[str], contenders: List[str]) -> str:
    if not contenders:
        return "no contender of the selection can run here (see the 'skipped' lines above; --pure drops the " \
               "lute_ipc-cython contenders)"
    where = "; ".join(f"{name}: {', '.join(CONTENDER_BY_NAME[name].scenarios)}" for name in contenders)
    return f"no selected contender runs in scenario(s) {', '.join(scenarios)} (each runs in: {where})"


def _outputs(report: Report, args: argparse.Namespace, out: TextIO, progress: TextIO) -> int:
    print_tables(report, out)
    try:
        return _write_outputs(report, args, out)
    except OSError as exc:  # e.g. a folder removed during the run, a full disk, /proc
        _error_line(args, progress, f"an output was not written: {exc}")
        return EXIT_FAILURE


def _write_outputs(report: Report, args: argparse.Namespace, out: TextIO) -> int:
    status = EXIT_OK
    if args.json and args.json != args.from_json:
        report.write_json(args.json)
        out.write(f"\nJSON: {args.json}\n")
    if args.plot:
        from .plot import write_plot

        why = write_plot(report, args.plot)
        out.write(f"plot skipped: {why}\n" if why else f"plot: {args.plot}\n")
    if args.markdown:
        from .markdown import write_markdown

        write_markdown(report, args.markdown, plot_path=args.plot)
        out.write(f"report page: {args.markdown}\n")
    out.write(f"done in {report.meta['duration_s']:.0f} s\n")
    fragile = [f for f in report.failures if f.get("baseline_may_fail")]
    if fragile:
        out.write(f"{len(fragile)} measurement(s) of a third-party baseline failed: "
                  + "; ".join(sorted({f"{f['contender']}: {f['baseline_may_fail']}" for f in fragile})) + "\n")
    if len(report.failures) > len(fragile):
        out.write(f"{len(report.failures) - len(fragile)} measurement(s) FAILED (see above)\n")
        status = EXIT_FAILURE
    return status
