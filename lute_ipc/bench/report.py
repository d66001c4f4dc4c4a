"""Results: the records the run produces, their ratios, the console table and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, TextIO

from .options import CONTENDER_BY_NAME, SCENARIOS, SHAPE_NAMES
from .payloads import SHAPE_BY_NAME, shape_label
from .timing import median, spread


@dataclass
class Result:
    """The measurements of one contender in one scenario for one message shape.

    ``payload_bytes``: bytes of one pickled message of the shape (what MB/s counts).
    """

    scenario: str
    contender: str
    shape: str
    messages: int
    seconds: List[float]
    payload_bytes: int = 0
    median_s: float = 0.0
    msgs_per_s: float = 0.0
    mb_per_s: float = 0.0
    spread: float = 0.0
    ratio_best_alternative: Optional[float] = None
    best_alternative: Optional[str] = None
    fraction_of_raw: Optional[float] = None

    def __post_init__(self) -> None:
        self.median_s = median(self.seconds)
        if not self.payload_bytes and self.shape in SHAPE_BY_NAME:
            self.payload_bytes = SHAPE_BY_NAME[self.shape].payload_bytes
        self.msgs_per_s = self.messages / self.median_s
        self.mb_per_s = self.msgs_per_s * self.payload_bytes / 1e6
        self.spread = spread(self.seconds)


@dataclass
class Report:
    """Everything a run measured, with the run's context (``meta``) and what was skipped or failed."""

    meta: Dict[str, Any]
    results: List[Result] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    failures: List[Dict[str, Any]] = field(default_factory=list)

    def cell(self, scenario: str, shape: str) -> List[Result]:
        """The results of one scenario for one shape."""
        return [r for r in self.results if r.scenario == scenario and r.shape == shape]

    def find(self, scenario: str, contender: str, shape: str) -> Optional[Result]:
        """One result, or None when it was not measured."""
        return next((r for r in self.cell(scenario, shape) if r.contender == contender), None)

    def shapes(self) -> List[str]:
        """The shapes measured, in report order."""
        return [name for name in SHAPE_NAMES if any(r.shape == name for r in self.results)]

    def compute_ratios(self) -> None:
        """Fill each result's ratio to the best alternative and fraction of the raw byte loop."""
        for scenario in SCENARIOS:
            for shape in self.shapes():
                cell = self.cell(scenario, shape)
                alternatives = [r for r in cell if CONTENDER_BY_NAME[r.contender].kind == "alternative"]
                best = max(alternatives, key=lambda r: r.msgs_per_s, default=None)
                raw = next((r for r in cell if r.contender == "raw-bytes"), None)
                for result in cell:
                    if best is not None:
                        result.ratio_best_alternative = result.msgs_per_s / best.msgs_per_s
                        result.best_alternative = best.contender
                    if raw is not None:
                        result.fraction_of_raw = result.msgs_per_s / raw.msgs_per_s

    def to_json(self) -> Dict[str, Any]:
        """The JSON document: meta, results, skipped contenders, failed trials."""
        return {"meta": self.meta, "results": [asdict(r) for r in self.results],
                "skipped": self.skipped, "failures": self.failures}

    def write_json(self, path: str) -> None:
        """Write :meth:`to_json` to ``path``."""
        with open(path, "w", encoding="utf-8") as out:
            json.dump(self.to_json(), out, indent=1)
            out.write("\n")


def load_json(path: str) -> Report:
    """A :class:`Report` read back from :meth:`Report.write_json` (to re-render tables, plot and page)."""
    with open(path, encoding="utf-8") as source:
        document = json.load(source)
    fields = ("scenario", "contender", "shape", "messages", "seconds", "payload_bytes")
    results = [Result(**{name: entry[name] for name in fields}) for entry in document["results"]
               if entry["contender"] in CONTENDER_BY_NAME]
    report = Report(document["meta"], results, document.get("skipped", []), document.get("failures", []))
    report.compute_ratios()
    return report


def human_rate(value: float) -> str:
    """``1.23M``, ``45.6k``, ``789``: a rate in three significant digits."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def cell_text(result: Optional[Result]) -> str:
    """``msg/s  MB/s  ratio`` for one table cell ("-" when not measured)."""
    if result is None:
        return "-"
    ratio = "" if result.ratio_best_alternative is None else f" {result.ratio_best_alternative:.2f}x"
    return f"{human_rate(result.msgs_per_s)}/s {human_bandwidth(result.mb_per_s)}{ratio}"


def human_bandwidth(mb_per_s: float) -> str:
    """``4.43GB/s``, ``347MB/s``, ``0.55MB/s``."""
    return f"{mb_per_s / 1000:.3g}GB/s" if mb_per_s >= 1000 else f"{mb_per_s:.3g}MB/s"


def scenario_rows(report: Report, scenario: str) -> List[List[str]]:
    """Header and rows of one scenario's table: a contender per row, a message shape per column."""
    shapes = report.shapes()
    header = ["contender"] + [shape_label(name) for name in shapes]
    rows = [header]
    names = [c.name for c in CONTENDER_BY_NAME.values()
             if any(r.contender == c.name and r.scenario == scenario for r in report.results)]
    for name in names:
        by_shape = {r.shape: r for r in report.results if r.scenario == scenario and r.contender == name}
        rows.append([CONTENDER_BY_NAME[name].label] + [cell_text(by_shape.get(shape)) for shape in shapes])
    return rows


def shape_legend(report: Report) -> List[str]:
    """One line per shape measured: its column label and the message it stands for."""
    return [f"{shape_label(name)}: {SHAPE_BY_NAME[name].code} ({SHAPE_BY_NAME[name].payload_bytes} B pickled)"
            for name in report.shapes() if name in SHAPE_BY_NAME]


def print_tables(report: Report, out: TextIO) -> None:
    """The console report: the shapes, one table per scenario, then the targets."""
    load = report.meta.get("load_average_start", [0.0])[0]
    out.write("\ncells: messages/s, MB/s of pickled messages, ratio to the best alternative (median of "
              f"{report.meta['rounds']} interleaved round(s); load average {load:.1f} at the start, "
              f"{report.meta.get('load_average_end', [load])[0]:.1f} at the end)\nshapes:\n")
    for line in shape_legend(report):
        out.write(f"  {line}\n")
    for scenario, description in SCENARIOS.items():
        rows = scenario_rows(report, scenario)
        if len(rows) < 2:
            continue
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        out.write(f"\n{scenario}: {description}\n")
        for number, row in enumerate(rows):
            out.write("  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() + "\n")
            if number == 0:
                out.write("  ".join("-" * width for width in widths) + "\n")
        ceiling = ceiling_row(report, scenario)
        if ceiling:
            out.write("  ".join(text.ljust(width) for text, width in zip(ceiling, widths)).rstrip() + "\n")
    from .targets import target_rows

    rows = target_rows(report)
    if rows:
        out.write("\ntargets (issue 15), same-run ratios:\n")
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for number, row in enumerate(rows):
            out.write("  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() + "\n")
            if number == 0:
                out.write("  ".join("-" * width for width in widths) + "\n")


def ceiling_row(report: Report, scenario: str) -> List[str]:
    """``lute_ipc Cython / raw`` per shape: the fraction of the raw byte loop's rate ([] when not measured)."""
    shapes = report.shapes()
    by_shape = {r.shape: r for r in report.results if r.scenario == scenario and r.contender == "lute_ipc-cython"}
    if not any(r.fraction_of_raw is not None for r in by_shape.values()):
        return []
    cells = []
    for shape in shapes:
        fraction = by_shape[shape].fraction_of_raw if shape in by_shape else None
        cells.append("-" if fraction is None else f"{fraction:.2f}x raw")
    return ["(lute_ipc Cython / raw)"] + cells
