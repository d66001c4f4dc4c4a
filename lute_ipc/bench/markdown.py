"""``docs/benchmarks.md``: the report page, written from a :class:`~lute_ipc.bench.report.Report`.

Everything is generated except the section between ``<!-- notes -->`` and
``<!-- /notes -->``, which is carried over from the existing file: the place for the
analysis (profiles) a person wrote about these numbers.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional

from .options import CONTENDER_BY_NAME, CONTENDERS, DECODE, SCENARIOS, SOCKETS
from .payloads import shape_label
from .report import Report, ceiling_row, human_rate, scenario_rows, shape_legend
from .targets import target_rows

NOTES_START = "<!-- notes -->"
NOTES_END = "<!-- /notes -->"
_DEFAULT_NOTES = "_(No notes yet: write the analysis of these numbers here; regeneration keeps it.)_"


def command(meta: Dict[str, Any], path: str, plot_path: Optional[str]) -> str:
    """The command line that measured ``meta`` and writes the page to ``path`` (its selection included)."""
    words = ["python -m lute_ipc bench", *meta.get("arguments", [])]
    if plot_path:
        words += ["--plot", plot_path]
    return " ".join(words + ["--markdown", path])


def _existing_notes(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as page:
            text = page.read()
    except OSError:
        return _DEFAULT_NOTES
    found = re.search(re.escape(NOTES_START) + r"\n(.*?)\n" + re.escape(NOTES_END), text, re.S)
    return found.group(1) if found else _DEFAULT_NOTES


def _table(rows: List[List[str]]) -> List[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell.replace(" ", " · ", 2) if i else cell for i, cell in enumerate(row)) + " |"
              for row in rows[1:]]
    return lines


def findings(report: Report) -> List[str]:
    """Where lute_ipc (Cython) is not the fastest contender in (a)-(c), and its share of the raw byte loop."""
    lines: List[str] = []
    shapes = report.shapes()
    for scenario in list(DECODE) + list(SOCKETS):
        for shape in shapes:
            ranked = [r for r in report.cell(scenario, shape)
                      if CONTENDER_BY_NAME[r.contender].kind != "reference"
                      and r.contender not in ("lute_ipc-cython-read", "lute_ipc-cython-result", "lute_ipc-cython-zmq")]
            ours = next((r for r in ranked if r.contender == "lute_ipc-cython"), None)
            if ours is None or not ranked:
                continue
            best = max(ranked, key=lambda r: r.msgs_per_s)
            if best is not ours:
                lines.append(f"- {scenario}, {shape_label(shape)}: "
                             f"fastest is {CONTENDER_BY_NAME[best.contender].label} "
                             f"({human_rate(best.msgs_per_s)} msg/s); lute_ipc Cython reaches "
                             f"{ours.msgs_per_s / best.msgs_per_s:.2f}x of it.")
    if not lines:
        lines.append("- lute_ipc (Cython) is the fastest contender in every cell of (a)-(c).")
    shares = []
    for scenario in list(SOCKETS) + ["pipe-mixed"]:
        for shape in [s for s in shapes if s in ("64KiB", "1MiB")]:
            ours = next((r for r in report.cell(scenario, shape) if r.contender == "lute_ipc-cython"), None)
            if ours is not None and ours.fraction_of_raw is not None:
                shares.append(f"{scenario} {shape_label(shape)}: {ours.fraction_of_raw:.2f}")
    if shares:
        lines.append("- lute_ipc Cython (`read_many`) as a fraction of the raw byte loop (the target, 0.8 with "
                     "`read()`, is for 1 MiB bytes; the 64 KiB target compares with multiprocessing.connection): "
                     + "; ".join(shares) + ".")
    return lines


def noise(report: Report) -> str:
    """One sentence on the spread of the repeats."""
    spreads = sorted((r.spread, r.scenario, r.contender, r.shape) for r in report.results)
    if not spreads or report.meta["rounds"] < 2:
        return "One round per measurement: no spread to report (use more rounds for numbers to quote)."
    middle = spreads[len(spreads) // 2][0]
    worst = spreads[-1]
    return (f"Spread of the {report.meta['rounds']} rounds, (max - min) / median: median over all measurements "
            f"{middle:.0%}, worst {worst[0]:.0%} ({worst[1]}, {worst[2]}, {shape_label(worst[3])}). Load average "
            f"{report.meta['load_average_start'][0]:.1f} at the start and {report.meta['load_average_end'][0]:.1f} at "
            f"the end on {report.meta['cpus']} CPUs: other work shared the machine, which is why rounds are "
            f"interleaved and medians reported. Read ratios within about {min(middle, 0.9):.0%} of 1.00x as ties.")


def write_markdown(report: Report, path: str, plot_path: Optional[str] = None) -> None:
    """Write the page to ``path`` (keeping its notes section)."""
    meta = report.meta
    notes = _existing_notes(path)
    lines = [
        "# lute_ipc benchmarks",
        "",
        f"Generated by `{command(meta, path, plot_path)}` (mode **{meta['mode']}**, {meta['rounds']} round(s)) on "
        f"{meta['date_utc']}, commit `{meta['commit']}`, in {meta.get('duration_s', 0):.0f} s. Everything on this "
        "page except the *Notes* section is regenerated by that command; `--quick` gives the same tables in under "
        "a minute.",
        "",
        "## Method",
        "",
        "Every scenario is measured for each message shape; every figure names its shape (the i-th message of a "
        "run; MB/s counts the pickled message):",
        "",
    ]
    lines += [f"* {line}" for line in shape_legend(report)]
    lines += ["", "Scenarios:", ""]
    lines += [f"* `{name}`: {text}" for name, text in SCENARIOS.items()]
    lines += ["", "Contenders (references are ceilings or floors, not ranked):", ""]
    lines += [f"* **{c.label}** (`{c.name}`, {c.kind}): {c.help}" for c in CONTENDERS]
    lines += [
        "",
        "* End to end, the clock runs from the Task process's first write to the moment the Executor's consumer "
        "holds the last message (`time.perf_counter`, CLOCK_MONOTONIC, one clock for both processes). The Task is "
        "forked from a worker process (one per lute_ipc core, so the pure contender runs pure on both sides); its "
        "start-up and, for a persistent connection, its connection set-up are not timed. Connection per message "
        "times every connect. Pipe Tasks are new interpreters (their stdout must be their own pipe).",
        "* lute_ipc's Executor reads with `read_many` (the `read()` row reads one message per call, LUTE's API). On "
        "TCP lute_ipc runs with its defaults: every record of its session (a batch of frames, or one large frame) "
        "carries an HMAC-SHA256 tag, checked before anything in it is unpickled; no other contender authenticates "
        "anything. `multiprocessing.connection` listens with the same backlog as "
        "the others (its default of 1 drops connections under load).",
        "* LUTE's reader and one-buffer decoder copy a quadratic number of bytes, so they move fewer messages "
        "(the JSON gives every count); that flatters them. The LUTE algorithm's Task, the raw byte loop and "
        "the pickle references pickle their messages before the clock starts (lute_ipc's `write()` pickles "
        "inside the timed loop): that flatters them too.",
        "* The targets table puts the issue's targets next to same-run ratios of the `read()` row (LUTE's API). "
        "Timing on a shared machine is noisy; `python -m lute_ipc.bench.callgrind` gives deterministic instruction "
        "counts of the decode of the text and objects shapes (Cython, pure, bare `pickle.loads`), to check those "
        "ratios anywhere.",
        "* Rounds interleave the contenders of one cell (scenario x shape), rotating their order; each figure is "
        "the median of the rounds. msg/s is messages per second; MB/s is pickled-message bytes (10^6) per second; "
        "the ratio "
        "is msg/s over that of the best alternative in the same cell (references excluded).",
        "",
        "## Machine",
        "",
        f"{meta['cpu']}, {meta['cpus']} CPUs, {meta['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        noise(report),
        "",
        "## Results",
        "",
    ]
    if plot_path:
        relative = os.path.relpath(os.path.abspath(plot_path), os.path.dirname(os.path.abspath(path)))
        lines += [f"![messages per second per shape]({relative})", ""]
    lines += ["Cells: messages/s · MB/s of pickled messages · ratio to the best alternative; columns are the "
              "message shapes.", ""]
    targets = target_rows(report)
    if targets:
        lines += ["### Targets (issue 15): same-run ratios, `read()` (LUTE's API) over the baseline", ""]
        lines += ["| " + " | ".join(targets[0]) + " |", "|" + "---|" * len(targets[0])]
        lines += ["| " + " | ".join(row) + " |" for row in targets[1:]] + [""]
    for scenario, description in SCENARIOS.items():
        rows = scenario_rows(report, scenario)
        if len(rows) < 2:
            continue
        ceiling = ceiling_row(report, scenario)
        lines += [f"### `{scenario}`: {description}", ""] + _table(rows)
        lines += ["| " + " | ".join(ceiling) + " |"] if ceiling else []
        lines += [""]
    lines += ["## Findings (generated)", ""] + findings(report) + [""]
    if report.skipped or report.failures:
        missing = [f"{s['contender']} ({s['reason']})" for s in report.skipped]
        missing += [f"{f['scenario']} {f['contender']} {shape_label(f.get('shape', '?'))} failed: {f['error']}"
                    + (f" (a known weakness of this baseline: {f['baseline_may_fail']})" if f.get("baseline_may_fail")
                       else "")
                    for f in report.failures]
        lines += ["Not measured: " + "; ".join(missing) + ".", ""]
    lines += ["## Notes", "", NOTES_START, notes, NOTES_END, ""]
    with open(path, "w", encoding="utf-8") as page:
        page.write("\n".join(lines))


__all__ = ["write_markdown", "findings", "noise", "command"]
