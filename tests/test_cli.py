"""The command line as a new user runs it: ``python -m lute_ipc ...`` in a fresh process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

import lute_ipc
from lute_ipc.cli import main

from .usage_tasks.common import child_env


def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = child_env()
    for name in list(env):
        if name.startswith("LUTE_") and name != "LUTE_IPC_PURE_PYTHON":
            del env[name]
    env.update(extra or {})
    return env


def _cli(tmp_path: Path, *args: str, extra: Optional[Dict[str, str]] = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lute_ipc", *args], cwd=tmp_path, env=_env(extra),
                          capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("python -m lute_ipc") and "error:" in lines[0]
    return lines[0]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for expected in ("[signal] TASK_STARTED", "[signal] TASK_DONE", "[result] {'messages': 20000",
                     "[log]    TASK_LOG -- INFO:lute_ipc.demo.task: started", ";;;GSM",
                     "[text]   a plain print() on stdout", "progress: 20000/20000 data messages",
                     "summary: TASK_DONE, exit code 0", " 0 protocol errors", "OK: every message arrived, in order"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    assert " msg/s" in out
    assert proc.stderr == ""


@pytest.mark.parametrize("options", [["--raw", "--tcp"], ["--zmq", "--tcp"], ["--raw"]],
                         ids=["raw-tcp", "zmq-tcp", "raw-unix"])
def test_demo_transports(tmp_path: Path, options: list) -> None:
    proc = _cli(tmp_path, "demo", "--messages", "3000", *options)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "progress: 3000/3000" in proc.stdout and "OK: every message arrived" in proc.stdout
    assert ("TCP 127.0.0.1" in proc.stdout) == ("--tcp" in options)
    assert ("raw sockets" in proc.stdout) == ("--raw" in options)


def test_demo_with_a_failing_task_exits_1(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "demo", "--fail", "--messages", "10")
    assert proc.returncode == 1
    assert "[signal] TASK_FAILED" in proc.stdout and "summary: TASK_FAILED, exit code 1" in proc.stdout
    assert "TASK_FAILED" in _one_line_error(proc)


def test_info(tmp_path: Path) -> None:
    key = "ab" * 32
    proc = _cli(tmp_path, "info", extra={"LUTE_IPC_KEY": key, "LUTE_USE_TCP": "1", "LUTE_USE_ZMQ": "0"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    expected_impl = "python" if os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0") else \
        lute_ipc.framing.IMPLEMENTATION
    assert out.startswith(f"lute_ipc {lute_ipc.__version__}")
    assert f"implementation: {expected_impl} (" in out
    assert "pyzmq " in out and "libzmq " in out
    assert "raw sockets" in out and "TCP" in out and "required" in out
    assert "set (never shown)" in out and key not in out


def _main_without(module: str, tmp_path: Path, *args: str,
                  extra: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """The command line in a fresh process where ``import module`` fails (as if not installed/built)."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from lute_ipc.cli import main\nsys.exit(main(sys.argv[1:], prog='python -m lute_ipc'))\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=_env(extra),
                          capture_output=True, text=True, timeout=300)


def test_info_explains_an_accidental_pure_core(tmp_path: Path) -> None:
    proc = _main_without("lute_ipc._framing_c", tmp_path, "info", extra={"LUTE_IPC_PURE_PYTHON": ""})
    assert proc.returncode == 0, proc.stderr
    assert "implementation: python (" in proc.stdout
    assert "not chosen: the Cython extension lute_ipc._framing_c did not load" in proc.stdout
    assert "LUTE_IPC_PURE_PYTHON=1" in proc.stdout
    assert proc.stderr.count("PurePythonFallbackWarning") == 1


def test_info_says_the_pure_core_was_chosen(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "info", extra={"LUTE_IPC_PURE_PYTHON": "1"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "implementation: python (" in proc.stdout and "chosen with LUTE_IPC_PURE_PYTHON" in proc.stdout


def test_bench_plot_skipped_is_a_failure(tmp_path: Path) -> None:
    """--plot without matplotlib: the tables are printed, the plot is not, and the exit code says so."""
    report = tmp_path / "report.json"
    made = _cli(tmp_path, "bench", "--smoke", "--json", str(report), timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    plot = tmp_path / "plot.png"
    proc = _main_without("matplotlib", tmp_path, "bench", "--from-json", str(report), "--plot", str(plot))
    assert "plot skipped" in proc.stdout and not plot.exists()
    assert proc.returncode == 1
    assert "--plot" in _one_line_error(proc)


def test_info_reports_a_bad_environment(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "info", extra={"LUTE_PORT": "not-a-port"})
    assert proc.returncode == 1
    assert "LUTE_PORT" in proc.stdout and "INVALID" in proc.stdout


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["info", "--help"], ["--version"]],
                         ids=["main", "demo", "info", "version"])
def test_help_everywhere(tmp_path: Path, args: list) -> None:
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 0 and proc.stderr == ""
    if args == ["--version"]:
        assert proc.stdout.strip() == f"lute_ipc {lute_ipc.__version__}"
    else:
        assert proc.stdout.startswith("usage: python -m lute_ipc")


@pytest.mark.parametrize("args", [
    [], ["bogus"], ["demo", "--messages", "-5"], ["demo", "--messages", "many"], ["demo", "--zmq", "--raw"],
    ["demo", "--timeout", "0"], ["info", "--extra"], ["demo", "--messages"],
], ids=["none", "unknown-command", "negative", "not-a-number", "zmq-and-raw", "zero-timeout", "unknown-option",
        "missing-value"])
def test_bad_arguments_give_one_line_and_exit_2(tmp_path: Path, args: list) -> None:
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 2
    _one_line_error(proc)
    assert proc.stdout == ""


def test_main_returns_codes_instead_of_exiting(capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--messages", "x"]) == 2
    assert main(["--help"]) == 0
    captured = capsys.readouterr()
    assert "usage: lute-ipc" in captured.out
    assert captured.err.count("\n") == 1


def test_console_script(tmp_path: Path) -> None:
    exe = shutil.which("lute-ipc", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        pytest.skip("the lute-ipc console script is not installed (pip install -e .)")
    proc = subprocess.run([exe, "info"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("lute_ipc ")


def test_readme_quickstart_runs(tmp_path: Path) -> None:
    """The two Quickstart snippets of README.md, run as written: they must stay true."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    executor, task = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (tmp_path / "run.py").write_text(executor)
    (tmp_path / "my_task.py").write_text(task)
    proc = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "log: INFO:root:working..." in lines
    assert "result: {'result': 42}" in lines
    assert "other: Message(contents=None, signal='TASK_STARTED')" in lines
    assert lines[-1] == "TASK_DONE 0 4"


def test_demo_timeout_stops_the_task(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "demo", "--messages", "10000000", "--timeout", "1")
    assert proc.returncode == 1
    assert "summary: TIMEOUT" in proc.stdout
    *warnings, error = proc.stderr.splitlines()
    assert error == "python -m lute_ipc demo: error: the Task ended TIMEOUT (exit code -15)"
    assert [w for w in warnings if "exceeded its timeout of 1 s" not in w] == []


def test_importing_the_usage_modules_has_no_side_effects(tmp_path: Path) -> None:
    code = (
        "import logging, os, threading\n"
        "before = dict(os.environ)\n"
        "import lute_ipc.executor, lute_ipc.task, lute_ipc.log_handler, lute_ipc.cli, lute_ipc._demo_task\n"
        "import lute_ipc.__main__\n"
        "assert dict(os.environ) == before, 'environment changed'\n"
        "assert not logging.getLogger().handlers, 'root logger configured'\n"
        "assert threading.active_count() == 1, 'thread started'\n"
        "assert lute_ipc.task._reporter is None, 'reporter created'\n"
        "print('clean')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout == "clean\n", proc.stderr


def test_demo_checks_can_fail() -> None:
    """The demo's verdict (plain code): the result before the flushed "done" line is a failure,
    as are data out of order; the right order passes."""
    from lute_ipc._demo_task import DONE_LINE
    from lute_ipc.cli import DemoChecks
    from lute_ipc.executor import Outcome

    def verdict(events: list) -> list:
        checks = DemoChecks(2, DONE_LINE)
        for kind, value in events:
            {"data": checks.data_message, "log": checks.log_line, "result": lambda _: checks.result()}[kind](value)
        return checks.problems(Outcome.DONE, 0, ["r"], "r")

    done = f"TASK_LOG -- INFO:lute_ipc.demo.task: {DONE_LINE}"
    assert verdict([("data", 0), ("data", 1), ("log", done), ("result", None)]) == []
    late = verdict([("data", 0), ("data", 1), ("result", None), ("log", done)])
    assert len(late) == 1 and "the result arrived before the log line" in late[0]
    assert verdict([("data", 1), ("data", 0), ("log", done), ("result", None)]) == \
        ["data messages arrived out of order"]


@pytest.mark.parametrize("run", range(4))
def test_demo_small_runs_keep_the_done_line_before_the_result(tmp_path: Path, run: int) -> None:
    """The issue's case: with 200 messages the result used to overtake the flushed "done" line."""
    proc = _cli(tmp_path, "demo", "--messages", "200", *(["--raw"] if run % 2 else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    done = next(i for i, line in enumerate(lines) if "done: reporting the result" in line)
    result = next(i for i, line in enumerate(lines) if line.startswith("[result]"))
    assert done < result
