"""Results: the records the run produces, their ratios, the console table and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, TextIO

from .options import CONTENDER_BY_NAME, SCENARIOS
from .payloads import size_label
from .timing import median, spread


@dataclass
class Result:
    """The measurements of one contender in one scenario at one payload size."""

    scenario: str
    contender: str
    size: int
    messages: int
    seconds: List[float]
    median_s: float = 0.0
    msgs_per_s: float = 0.0
    mb_per_s: float = 0.0
    spread: float = 0.0
    ratio_best_alternative: Optional[float] = None
    best_alternative: Optional[str] = None
    fraction_of_raw: Optional[float] = None

    def __post_init__(self) -> None:
        self.median_s = median(self.seconds)
        self.msgs_per_s = self.messages / self.median_s
        self.mb_per_s = self.msgs_per_s * self.size / 1e6
        self.spread = spread(self.seconds)


@dataclass
class Report:
    """Everything a run measured, with the run's context (``meta``) and what was skipped or failed."""

    meta: Dict[str, Any]
    results: List[Result] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    failures: List[Dict[str, Any]] = field(default_factory=list)

    def cell(self, scenario: str, size: int) -> List[Result]:
        """The results of one scenario at one size."""
        return [r for r in self.results if r.scenario == scenario and r.size == size]

    def compute_ratios(self) -> None:
        """Fill each result's ratio to the best alternative and fraction of the raw byte loop."""
        for scenario in SCENARIOS:
            for size in sorted({r.size for r in self.results}):
                cell = self.cell(scenario, size)
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
    fields = ("scenario", "contender", "size", "messages", "seconds")
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
    """Header and rows of one scenario's table: a contender per row, a payload size per column."""
    sizes = sorted({r.size for r in report.results})
    header = ["contender"] + [size_label(size) for size in sizes]
    rows = [header]
    names = [c.name for c in CONTENDER_BY_NAME.values()
             if any(r.contender == c.name and r.scenario == scenario for r in report.results)]
    for name in names:
        by_size = {r.size: r for r in report.results if r.scenario == scenario and r.contender == name}
        rows.append([CONTENDER_BY_NAME[name].label] + [cell_text(by_size.get(size)) for size in sizes])
    return rows


def print_tables(report: Report, out: TextIO) -> None:
    """The console report: one table per scenario."""
    out.write("\ncells: messages/s, MB/s of payload, ratio to the best alternative (median of "
              f"{report.meta['rounds']} interleaved round(s))\n")
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


def ceiling_row(report: Report, scenario: str) -> List[str]:
    """``lute_ipc Cython / raw`` per size: the fraction of the raw byte loop's rate ([] when not measured)."""
    sizes = sorted({r.size for r in report.results})
    by_size = {r.size: r for r in report.results if r.scenario == scenario and r.contender == "lute_ipc-cython"}
    if not any(r.fraction_of_raw is not None for r in by_size.values()):
        return []
    cells = []
    for size in sizes:
        fraction = by_size[size].fraction_of_raw if size in by_size else None
        cells.append("-" if fraction is None else f"{fraction:.2f}x raw")
    return ["(lute_ipc Cython / raw)"] + cells
