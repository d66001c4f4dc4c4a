"""``python -m lute_ipc bench`` as a new user runs it: exit code, table, JSON, PNG.

Runs the ``--smoke`` mode (every scenario, contender and message shape, tiny counts, one
round) in a subprocess, once for the module: speed is never asserted, only that every
measurement exists, is a positive number and names its shape. The optional ``bench``
extra (msgpack, matplotlib) may be missing: that is the README's install.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from lute_ipc.bench.options import CONTENDERS, SCENARIOS, SHAPE_NAMES
from lute_ipc.bench.payloads import SHAPES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    directory = tmp_path_factory.mktemp("bench")
    json_path, png_path, page = directory / "bench.json", directory / "bench.png", directory / "bench.md"
    # --plot only where matplotlib is there (the `bench` extra): without it the command says
    # "plot skipped" and exits 1 (test_missing_optional_packages_are_skipped_with_a_line)
    plot = ["--plot", str(png_path)] if importlib.util.find_spec("matplotlib") else []
    proc = subprocess.run([sys.executable, "-m", "lute_ipc", "bench", "--smoke", "--json", str(json_path),
                           *plot, "--markdown", str(page)],
                          capture_output=True, text=True, timeout=600, cwd=directory)
    return {"proc": proc, "json": json_path, "png": png_path, "page": page}


def test_exit_code_and_table(smoke_run: Dict[str, Any]) -> None:
    proc = smoke_run["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("lute_ipc bench (smoke)")
    assert "cells: messages/s, MB/s of pickled messages, ratio to the best alternative" in proc.stdout
    header = [line for line in proc.stdout.splitlines() if line.startswith("contender")]
    assert len(header) == len(SCENARIOS)
    assert all(line.split()[1:] == ["text", "objects", "64", "KiB", "bytes", "1", "MiB", "bytes"] for line in header)
    for shape in SHAPES:  # every column label is explained by the message it stands for
        assert f"  {shape.label}: {shape.code}" in proc.stdout


def test_targets_are_printed_next_to_the_ratios(smoke_run: Dict[str, Any]) -> None:
    lines = smoke_run["proc"].stdout.split("targets (issue 15), same-run ratios:")[1].splitlines()
    objects_vs_pyzmq = next(line for line in lines if line.startswith("objects, Unix, read() vs pyzmq"))
    assert ">= 1.50x" in objects_vs_pyzmq and "1.80x" in objects_vs_pyzmq
    assert any(line.startswith("1 MiB, Unix, read() vs raw byte loop") and ">= 0.80x" in line for line in lines)


def test_json_has_every_measurement(smoke_run: Dict[str, Any]) -> None:
    document = json.loads(smoke_run["json"].read_text())
    # only a baseline known to fail under load (LUTE's 10 ms socket timeout) may fail, and it says why
    assert all(f.get("baseline_may_fail") for f in document["failures"]), document["failures"]
    failed = {(f["scenario"], f["contender"], f["shape"]) for f in document["failures"]}
    skipped = {entry["contender"] for entry in document["skipped"]}
    measured = {(r["scenario"], r["contender"], r["shape"]): r for r in document["results"]}
    for contender in CONTENDERS:
        if contender.name in skipped:
            continue
        for scenario in contender.scenarios:
            for shape in SHAPE_NAMES:
                if (scenario, contender.name, shape) in failed:
                    continue
                result = measured[(scenario, contender.name, shape)]
                assert result["messages"] > 0
                assert result["msgs_per_s"] > 0 and result["mb_per_s"] > 0
                assert all(seconds > 0 for seconds in result["seconds"])
    assert document["meta"]["mode"] == "smoke"


def test_plot_is_a_png(smoke_run: Dict[str, Any]) -> None:
    png: Path = smoke_run["png"]
    if "plot skipped" in smoke_run["proc"].stdout:
        pytest.skip("matplotlib is not installed")
    assert png.read_bytes()[:8] == PNG_SIGNATURE


def test_report_page(smoke_run: Dict[str, Any]) -> None:
    text = smoke_run["page"].read_text()
    for heading in ("## Method", "## Machine", "## Results", "## Findings (generated)", "<!-- notes -->"):
        assert heading in text
    assert "![messages per second per shape](bench.png)" in text
    assert 'Message(contents={"i": i, "v": "x"*40})' in text
    assert text.count("| contender |") == len(SCENARIOS)


def test_help_documents_the_options() -> None:
    proc = subprocess.run([sys.executable, "-m", "lute_ipc", "bench", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    for option in ("--quick", "--smoke", "--json", "--plot", "--markdown", "--pure", "--contender", "--scenario"):
        assert option in proc.stdout


def test_bad_argument_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "lute_ipc", "bench", "--contender", "nope"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_missing_optional_packages_are_skipped_with_a_line(tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    code = ("import sys; sys.modules['matplotlib'] = None; sys.modules['msgpack'] = None; "
            "from lute_ipc.cli import main; "
            f"sys.exit(main(['bench', '--smoke', '--scenario', 'decode-buffer', '--shape', 'objects', '--plot', {str(png)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the plot asked for was not written
    assert proc.stdout.startswith("lute_ipc bench (smoke)")  # the header first, then what was skipped
    assert "skipped msgpack: msgpack is not installed" in proc.stdout
    assert "plot skipped: matplotlib is not installed" in proc.stdout
    assert not png.exists()
