"""The LUTE switch (``python -m lute_ipc lute-shim``) with real interpreters and LUTE's real package.

Each check starts a fresh Python that reads a temporary site directory holding the ``.pth``
file (``site.addsitedir``, as the interpreter does with its own site-packages at start-up),
then imports ``lute.execution.ipc`` the way LUTE does. Needs ``lute-lcls`` 0.3.0 importable
(CI installs it); skips otherwise.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Set

import pytest

from lute_ipc import lute_shim
from lute_ipc.lute_log import LUTE_LOGGER, OWN_LOGGER, executor_ready, reader_stopped

REPO = Path(__file__).resolve().parent.parent


def _lute_dir() -> Optional[Path]:
    import importlib.util

    spec = importlib.util.find_spec("lute")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


LUTE_DIR = _lute_dir()
needs_lute = pytest.mark.skipif(LUTE_DIR is None or not (LUTE_DIR / "execution" / "ipc.py").is_file(),
                                reason="lute-lcls 0.3.0 is not installed (pip install --no-deps lute-lcls==0.3.0)")


@pytest.fixture
def site_dir(tmp_path: Path) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    yield site


PROBE = """
import json, os, site, sys
site.addsitedir(sys.argv[1])
import lute.execution.ipc as ipc
import lute_ipc
print(json.dumps({"lute_ipc": ipc.Message is lute_ipc.Message, "module": type(ipc).__name__,
                  "shim_env": os.environ.get("LUTE_IPC_SHIM")}))
"""


def probe(site: Path, env_value: Optional[str], nested: bool = False) -> Dict[str, Any]:
    """Which module a fresh interpreter (and, with ``nested``, a process it starts) gets."""
    env = {k: v for k, v in os.environ.items() if k != lute_shim.SHIM_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if env_value is not None:
        env[lute_shim.SHIM_ENV] = env_value
    code = PROBE
    if nested:  # the parent starts a child, as an Executor starts its Task
        code = ("import os, site, subprocess, sys\nsite.addsitedir(sys.argv[1])\n"
                f"sys.exit(subprocess.call([sys.executable, '-c', {PROBE!r}, sys.argv[1]]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(site)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _names_lute_imports(lute_dir: Path) -> Set[str]:
    """Every name LUTE's own sources take from lute.execution.ipc (imports and attribute uses)."""
    names: Set[str] = set()
    for path in lute_dir.rglob("*.py"):
        if path.parts[-2:] == ("execution", "ipc.py"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # LUTE's sources have invalid escapes
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == lute_shim.ALIAS:
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Attribute) and ast.unparse(node.value) in (lute_shim.ALIAS, "ipc"):
                names.add(node.attr)
    scripts = lute_dir.parent
    for script in ("subprocess_task.py", "run_task.py"):
        if (scripts / script).is_file():
            for node in ast.walk(ast.parse((scripts / script).read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == lute_shim.ALIAS:
                    names.update(alias.name for alias in node.names)
    return names


@needs_lute
def test_the_alias_exposes_every_name_lute_uses() -> None:
    assert LUTE_DIR is not None
    used = _names_lute_imports(LUTE_DIR)
    assert {"Message", "SocketCommunicator", "PipeCommunicator", "TaskRequestMessage"} <= used  # the scan works
    lute_all = set()
    tree = ast.parse((LUTE_DIR / "execution" / "ipc.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            lute_all = set(ast.literal_eval(node.value))
    missing = (used | lute_all | {"USE_ZMQ"}) - set(lute_shim.LUTE_NAMES) - {"USE_ZMQ"}
    assert not missing, f"lute.execution.ipc under the switch lacks {sorted(missing)}"


@needs_lute
def test_without_the_pth_file_lute_keeps_its_own_module(site_dir: Path) -> None:
    assert probe(site_dir, None) == {"lute_ipc": False, "module": "module", "shim_env": None}


@needs_lute
def test_install_switches_lute_to_lute_ipc_and_remove_switches_back(site_dir: Path) -> None:
    path = lute_shim.install(site_dir)
    assert path.name == lute_shim.PTH_NAME and path.parent == site_dir
    got = probe(site_dir, None)
    assert got["lute_ipc"] is True and got["module"] == "_LuteIpcModule"
    assert probe(site_dir, None, nested=True)["lute_ipc"] is True  # the Tasks it starts too
    assert lute_shim.remove(site_dir) == path
    assert probe(site_dir, None)["lute_ipc"] is False
    assert lute_shim.remove(site_dir) is None


@needs_lute
@pytest.mark.parametrize("value, here, child", [
    ("1", True, True), ("0", False, False), ("off", False, False),
    ("executor", True, False), ("task", False, True),
])
def test_per_process_choice_by_environment(site_dir: Path, value: str, here: bool, child: bool) -> None:
    lute_shim.install(site_dir)
    assert probe(site_dir, value)["lute_ipc"] is here
    assert probe(site_dir, value, nested=True)["lute_ipc"] is child


@needs_lute
@pytest.mark.parametrize("value, here", [("task", False), ("executor", True)])
def test_a_pth_file_read_twice_decides_once(site_dir: Path, value: str, here: bool) -> None:
    """Some interpreters (pyenv builds in a venv, seen here) read site-packages' .pth files twice
    at start-up: the second reading must not undo the role's rewrite of LUTE_IPC_SHIM."""
    lute_shim.install(site_dir)
    twice = PROBE.replace("site.addsitedir(sys.argv[1])\n", "site.addsitedir(sys.argv[1])\n"
                          "import lute_ipc.lute_shim as s; s.activate_from_env()\n")
    env = dict(os.environ, LUTE_IPC_SHIM=value, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", twice, str(site_dir)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["lute_ipc"] is here


@needs_lute
def test_an_unknown_value_keeps_lute_and_says_so(site_dir: Path) -> None:
    lute_shim.install(site_dir)
    env = dict(os.environ, LUTE_IPC_SHIM="sometimes", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", PROBE, str(site_dir)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert json.loads(out.stdout)["lute_ipc"] is False
    assert "LUTE_IPC_SHIM='sometimes'" in out.stderr


@needs_lute
def test_lute_code_runs_on_the_alias(site_dir: Path) -> None:
    """LUTE's own modules that import lute.execution.ipc load and use lute_ipc's classes."""
    lute_shim.install(site_dir)
    code = (
        "import site, sys; site.addsitedir(sys.argv[1])\n"
        "import lute.execution.ipc as ipc, lute_ipc, lute_ipc.sockets as s\n"
        "from lute.execution.logging import SocketCommunicatorHandler\n"
        "assert ipc.SocketCommunicator is lute_ipc.SocketCommunicator\n"
        "assert ipc.LUTE_SIGNALS is lute_ipc.LUTE_SIGNALS and ipc.USE_ZMQ == s.USE_ZMQ\n"
        "ipc.USE_ZMQ = False\n"
        "assert s.USE_ZMQ is False and ipc.SocketCommunicator().use_zmq is False\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(site_dir)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_status_and_the_command_line(site_dir: Path) -> None:
    from lute_ipc.cli import main

    assert lute_shim.status(site_dir)["installed"] is False
    assert main(["lute-shim", "install", "--site-dir", str(site_dir)]) == 0
    facts = lute_shim.status(site_dir)
    assert facts["installed"] is True and facts["pth_file"] == str(site_dir / lute_shim.PTH_NAME)
    assert main(["lute-shim", "status", "--site-dir", str(site_dir)]) == 0
    assert main(["lute-shim", "remove", "--site-dir", str(site_dir)]) == 0
    assert not (site_dir / lute_shim.PTH_NAME).exists()
    (site_dir / lute_shim.PTH_NAME).write_text("import something_else\n")
    assert lute_shim.status(site_dir)["stale_file"] is True


def test_a_pth_file_whose_lute_ipc_is_gone_is_silent(site_dir: Path, tmp_path: Path) -> None:
    """Uninstalling lute_ipc without 'lute-shim remove' must not break every Python start."""
    lute_shim.install(site_dir)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-I", "-c", "import site, sys; site.addsitedir(sys.argv[1]); print('up')",
                          str(site_dir)], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "up"


# --------------------------------------------------------------------------- log lines
@pytest.mark.parametrize("use_zmq, use_tcp, address, lines", [
    (True, False, "/tmp/x/lute.sock", ["Will use Unix sockets (ZMQ), lute_ipc transport.",
                                        "Executor socket path: /tmp/x/lute.sock"]),
    (False, True, "0.0.0.0:41000", ["Will use TCP (raw sockets), lute_ipc transport.",
                                    "Executor listening on TCP port 41000 (0.0.0.0:41000)."]),
])
def test_executor_log_lines(caplog: pytest.LogCaptureFixture, use_zmq: bool, use_tcp: bool, address: str,
                            lines: list) -> None:
    with caplog.at_level(logging.INFO):
        executor_ready(use_zmq, use_tcp, address)
        reader_stopped()
    assert [r.getMessage() for r in caplog.records] == lines + ["Stopped the socket reader thread."]
    assert {r.name for r in caplog.records} == {OWN_LOGGER}  # not switched: lute_ipc's logger


@needs_lute
@pytest.mark.parametrize("use_zmq", ["1", "0"], ids=["zmq", "raw"])
def test_a_real_executor_logs_under_lutes_logger_when_switched(site_dir: Path, use_zmq: str) -> None:
    lute_shim.install(site_dir)
    code = (
        "import logging, site, sys; site.addsitedir(sys.argv[1])\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s:%(name)s:%(message)s', stream=sys.stdout)\n"
        "from lute.execution.ipc import SocketCommunicator, Party\n"
        "comm = SocketCommunicator(Party.EXECUTOR); comm.delayed_setup(); comm.clear_communicator()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}
    env.update(PYTHONPATH=str(REPO), LUTE_USE_ZMQ=use_zmq)
    out = subprocess.run([sys.executable, "-c", code, str(site_dir)], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    engine = "ZMQ" if use_zmq == "1" else "raw sockets"
    assert f"INFO:{LUTE_LOGGER}:Will use Unix sockets ({engine}), lute_ipc transport." in out.stdout
    assert f"INFO:{LUTE_LOGGER}:Executor socket path: " in out.stdout
    assert f"INFO:{LUTE_LOGGER}:Stopped the socket reader thread." in out.stdout
