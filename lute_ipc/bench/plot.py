"""The PNG: messages/s per message shape (log axis), one panel per scenario, every shape named on its axis."""

from __future__ import annotations

from typing import Optional

from .options import CONTENDERS, SCENARIOS
from .payloads import shape_label
from .report import Report

_STYLE = {
    "lute_ipc-cython": ("tab:red", "-", "o", 2.6),
    "lute_ipc-cython-read": ("tab:red", ":", "o", 1.6),
    "lute_ipc-cython-result": ("tab:pink", "--", "o", 1.6),
    "lute_ipc-pure": ("tab:orange", "-", "s", 1.6),
    "lute_ipc-cython-zmq": ("tab:red", "-.", "o", 1.4),
    "lute": ("tab:gray", "-", "v", 1.6),
    "lute-lcls": ("black", "-", "v", 1.4),
    "lute-lcls-zmq": ("black", "-.", "v", 1.4),
    "mp-connection": ("tab:green", "-", "^", 1.6),
    "pyzmq": ("tab:blue", "-", "D", 1.6),
    "msgpack": ("tab:purple", "-", "P", 1.6),
    "pickle-loads": ("dimgray", ":", "", 1.6),
    "pickle-loads-each": ("silver", ":", "", 1.6),
    "raw-bytes": ("black", "--", "", 1.2),
}


def write_plot(report: Report, path: str) -> Optional[str]:
    """Write the plot to ``path``; returns why it was skipped (matplotlib missing), or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'lute-ipc[bench]'): no plot written"
    scenarios = [s for s in SCENARIOS if any(r.scenario == s for r in report.results)]
    columns = 4 if len(scenarios) > 3 else max(1, len(scenarios))
    rows = (len(scenarios) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows + 0.8), squeeze=False)
    shapes = report.shapes()
    position = {name: number for number, name in enumerate(shapes)}
    handles = {}
    for axis, scenario in zip(axes.flat, scenarios):
        for contender in CONTENDERS:
            points = sorted((position[r.shape], r.msgs_per_s) for r in report.results
                            if r.scenario == scenario and r.contender == contender.name)
            if not points:
                continue
            color, line, marker, width = _STYLE.get(contender.name, ("tab:brown", "-", "x", 1.4))
            (handle,) = axis.plot([p[0] for p in points], [p[1] for p in points], color=color, linestyle=line,
                                  marker=marker, linewidth=width, markersize=4, label=contender.label)
            handles[contender.label] = handle
        axis.set_yscale("log")
        axis.set_xticks(range(len(shapes)))
        axis.set_xticklabels([shape_label(s) for s in shapes], fontsize=8)
        axis.set_title(scenario, fontsize=10)
        axis.set_ylabel("messages/s", fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
        axis.grid(True, which="major", alpha=0.3)
    for axis in list(axes.flat)[len(scenarios):]:
        axis.axis("off")
    meta = report.meta
    figure.suptitle(f"lute_ipc bench ({meta['mode']}, median of {meta['rounds']}): messages/s per message shape; "
                    f"commit {meta.get('commit', '?')}, load average {meta.get('load_average_start', [0])[0]:.1f}",
                    fontsize=10)
    figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(5, len(handles)),
                  fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
