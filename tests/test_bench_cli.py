"""``python -m lute_ipc bench`` as a new user runs it: exit code, table, JSON, PNG.

Runs the ``--smoke`` mode (every scenario, contender and size, tiny counts, one round) in
a subprocess, once for the module: speed is never asserted, only that every measurement
exists and is a positive number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from lute_ipc.bench.options import CONTENDERS, SCENARIOS
from lute_ipc.bench.payloads import SIZES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    directory = tmp_path_factory.mktemp("bench")
    json_path, png_path, page = directory / "bench.json", directory / "bench.png", directory / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "lute_ipc", "bench", "--smoke", "--json", str(json_path),
                           "--plot", str(png_path), "--markdown", str(page)],
                          capture_output=True, text=True, timeout=120, cwd=directory)
    return {"proc": proc, "json": json_path, "png": png_path, "page": page}


def test_exit_code_and_table(smoke_run: Dict[str, Any]) -> None:
    proc = smoke_run["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("lute_ipc bench (smoke)")
    assert "cells: messages/s, MB/s of payload, ratio to the best alternative" in proc.stdout
    header = [line for line in proc.stdout.splitlines() if line.startswith("contender")]
    assert len(header) == len(SCENARIOS)
    assert all(line.split()[1:] == ["64", "B", "1", "KiB", "64", "KiB", "1", "MiB"] for line in header)


def test_json_has_every_measurement(smoke_run: Dict[str, Any]) -> None:
    document = json.loads(smoke_run["json"].read_text())
    assert document["failures"] == []
    skipped = {entry["contender"] for entry in document["skipped"]}
    measured = {(r["scenario"], r["contender"], r["size"]): r for r in document["results"]}
    for contender in CONTENDERS:
        if contender.name in skipped:
            continue
        for scenario in contender.scenarios:
            for size in SIZES:
                result = measured[(scenario, contender.name, size)]
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
    assert "![throughput vs payload size](bench.png)" in text
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
            f"sys.exit(main(['bench', '--smoke', '--scenario', 'decode-buffer', '--size', '64', '--plot', {str(png)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped msgpack: msgpack is not installed" in proc.stdout
    assert "plot skipped: matplotlib is not installed" in proc.stdout
    assert not png.exists()
