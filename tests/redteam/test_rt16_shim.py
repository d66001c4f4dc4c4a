"""Red team 16: the LUTE switch (``python -m lute_ipc lute-shim install|remove|status``).

docs/MIGRATION.md: ``install`` writes one ``.pth`` file; "Python runs its one line at every
start-up: it puts an import hook in front of ``sys.meta_path`` and imports nothing else."

Held (passing tests): install and remove are idempotent and round-trip (the same single file,
byte for byte, after a second install; a second remove succeeds and changes nothing; status
follows), and under the switch the alias's ``USE_ZMQ`` reads and writes lute_ipc's default as
LUTE code expects.

Broken: the line imports the ``lute_ipc`` package, and with it ``lute_ipc.communicator``,
``lute_ipc.message``, ``lute_ipc.errors`` and the standard modules they need (``pickle``,
``subprocess``, ``argparse``, ``inspect``, ``dataclasses``...: about thirty modules) in *every*
Python process of the environment, LUTE or not, before its first line runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

import lute_ipc

ROOT = Path(lute_ipc.__file__).resolve().parents[1]
"""The directory lute_ipc is imported from (this checkout, or site-packages for a wheel)."""
pytestmark = pytest.mark.timeout(120)

FOOTPRINT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])   # where lute_ipc is installed, without its .pth files
    import site
    before = set(sys.modules)
    site.addsitedir(sys.argv[2])      # the switch's directory: Python reads its .pth file
    new = sorted(set(sys.modules) - before)
    hook = type(sys.meta_path[0]).__module__
    print(json.dumps({"new": new, "hook": hook}))
    """
)


def _env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LUTE_") and k != "PYTHONPATH"}


def _shim(command: str, site_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lute_ipc", "lute-shim", command, "--site-dir", str(site_dir)],
                          env=_env(), capture_output=True, text=True, timeout=120)


def _footprint(site_dir: Path) -> Dict[str, List[str]]:
    # -S: the environment's own .pth files (an editable install, a switch installed there) stay unread
    done = subprocess.run([sys.executable, "-S", "-c", FOOTPRINT, str(ROOT), str(site_dir)], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result: Dict[str, List[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_pth_line_imports_only_its_hook(tmp_path: Path) -> None:
    assert _shim("install", tmp_path).returncode == 0
    footprint = _footprint(tmp_path)
    assert footprint["hook"].startswith("lute_ipc"), footprint  # the switch is active: the check is meaningful
    ours = [m for m in footprint["new"] if m == "lute_ipc" or m.startswith("lute_ipc.")]
    assert set(ours) <= {"lute_ipc", "lute_ipc.lute_shim"}, f"imported at every start-up: {ours}"
    heavy = [m for m in ("pickle", "subprocess", "argparse", "inspect") if m in footprint["new"]]
    assert not heavy, f"standard modules imported at every start-up by the switch: {heavy} (all: {footprint['new']})"


def test_install_and_remove_are_idempotent_and_round_trip(tmp_path: Path) -> None:
    assert sorted(tmp_path.iterdir()) == []
    first = _shim("install", tmp_path)
    assert first.returncode == 0, first.stderr
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pth", files
    content = files[0].read_bytes()
    second = _shim("install", tmp_path)
    assert second.returncode == 0, second.stderr
    assert sorted(tmp_path.iterdir()) == files and files[0].read_bytes() == content
    status = _shim("status", tmp_path)
    assert "installed: True" in status.stdout, status.stdout
    for _ in range(2):
        removed = _shim("remove", tmp_path)
        assert removed.returncode == 0, removed.stderr
        assert sorted(tmp_path.iterdir()) == []
    status = _shim("status", tmp_path)
    assert "installed: False" in status.stdout, status.stdout
    footprint = _footprint(tmp_path)
    assert not any(m.startswith("lute_ipc") for m in footprint["new"]), footprint


ALIAS_USE_ZMQ = textwrap.dedent(
    """
    import os, sys, site
    sys.path.insert(0, sys.argv[1])
    site.addsitedir(sys.argv[2])
    import lute.execution.ipc as ipc
    assert "lute_ipc" in repr(ipc), repr(ipc)
    ipc.USE_ZMQ = False                       # what a LUTE user would write
    from lute.execution.ipc import USE_ZMQ, Party, SocketCommunicator
    comm = SocketCommunicator(Party.EXECUTOR)
    comm.delayed_setup()
    print(USE_ZMQ, str(comm))
    comm.clear_communicator()
    """
)


def test_the_alias_use_zmq_is_lute_ipcs_default(tmp_path: Path, lute_package: None) -> None:
    assert _shim("install", tmp_path).returncode == 0
    done = subprocess.run([sys.executable, "-S", "-c", ALIAS_USE_ZMQ, str(ROOT), str(tmp_path)],
                          env=dict(_env(), PYTHONPATH=os.pathsep.join(p for p in sys.path if "site-packages" in p)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    use_zmq, _, desc = done.stdout.strip().splitlines()[-1].partition(" ")
    assert use_zmq == "False" and "ZMQ" not in desc, done.stdout


@pytest.mark.parametrize("kind", ["missing", "a-file"])
def test_install_into_a_bad_site_dir_says_why(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "no" / "such" / "dir"
    if kind == "a-file":
        target = tmp_path / "a-file"
        target.write_text("not a directory")
    done = _shim("install", target)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    assert str(target) in done.stderr + done.stdout, (done.stdout, done.stderr)
