"""Shared fixtures: ``impl`` runs a test on both framing twins (ids ``c`` and ``py``).

Two kinds of core parametrisation:

* ``impl`` / ``both_impls``: the twins side by side in this process (differential, cheap): both,
  in every run.
* ``core`` (``"0"`` Cython, ``"1"`` pure): the ``LUTE_IPC_PURE_PYTHON`` given to child Tasks and
  Executors. Those tests run on **the core of the run** only: the Cython one, or the pure one under
  ``LUTE_IPC_PURE_PYTHON=1`` (the suite runs once per core: README, ``.ci/run``); the other
  value is deselected. ``--both-cores`` runs both in one run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Dict, Iterator, Optional

import pytest

from lute_ipc import _framing_py

if TYPE_CHECKING:
    from tests.socket_tasks.lute_executor import PullSocket

_framing_c: Optional[ModuleType]
try:
    from lute_ipc import _framing_c
except ImportError:  # extension not built: the c leg skips (CI fails elsewhere if it should exist)
    _framing_c = None

IMPLEMENTATIONS: Dict[str, Optional[ModuleType]] = {"c": _framing_c, "py": _framing_py}


def pytest_report_header(config: pytest.Config) -> str:
    """Which lute_ipc is under test (CI checks it is the installed wheel, not the source tree)."""
    import lute_ipc
    from lute_ipc import framing

    return f"lute_ipc {lute_ipc.__version__} from {lute_ipc.__file__}, core: {framing.IMPLEMENTATION}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-cython", action="store_true", help="skip the tests of the Cython twin")
    parser.addoption("--both-cores", action="store_true",
                     help="run the tests of child processes on both cores (default: the core of this run)")


def run_core(config: pytest.Config) -> str:
    """``LUTE_IPC_PURE_PYTHON`` of this run's core: ``"1"`` when the pure core is asked for (or the
    only one there is), else ``"0"``."""
    if pure_python_forced() or _framing_c is None or config.getoption("--no-cython"):
        return "1"
    return "0"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``core`` variants that are not this run's core (module docstring)."""
    if config.getoption("--both-cores"):
        return
    core = run_core(config)
    other = [item for item in items if _core_param(item) not in (None, core)]
    if other:
        config.hook.pytest_deselected(items=other)
        dropped = set(map(id, other))
        items[:] = [item for item in items if id(item) not in dropped]


def _core_param(item: pytest.Item) -> Optional[str]:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("core") if callspec is not None else None
    return value if value in ("0", "1") else None


@pytest.fixture(params=["c", "py"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The framing module under test: the Cython extension or the pure-Python reference."""
    module = IMPLEMENTATIONS[request.param]
    if module is None:
        pytest.skip("the Cython extension lute_ipc._framing_c is not built")
    if request.param == "c" and request.config.getoption("--no-cython"):
        pytest.skip("--no-cython given")
    return module


@pytest.fixture(params=[pytest.param("0", id="c"), pytest.param("1", id="py")])
def core(request: pytest.FixtureRequest) -> str:
    """``LUTE_IPC_PURE_PYTHON`` for a child Task: ``"0"`` (the Cython core) or ``"1"`` (the pure
    one), so that both framing cores write."""
    if request.param == "0":
        if _framing_c is None:
            pytest.skip("the Cython extension lute_ipc._framing_c is not built")
        if request.config.getoption("--no-cython"):
            pytest.skip("--no-cython given")
    return str(request.param)


@pytest.fixture
def clean_lute_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``LUTE_*`` variable of the caller's environment reaches the test (Executors export their own)."""
    from tests.socket_tasks.helpers import clear_lute_env

    clear_lute_env(monkeypatch)


@pytest.fixture
def pull_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PullSocket]:
    """A bare ZeroMQ PULL socket where LUTE's Executor would be; parametrise it indirectly with
    the socket family (``"unix"`` or ``"tcp"``)."""
    from tests.socket_tasks.lute_executor import PullSocket

    sock = PullSocket(request.param, tmp_path)
    yield sock
    sock.close()


@pytest.fixture
def both_impls() -> Dict[str, ModuleType]:
    """Both twins, for differential tests (skips when the extension is not built)."""
    if _framing_c is None:
        pytest.skip("the Cython extension lute_ipc._framing_c is not built")
    return {"c": _framing_c, "py": _framing_py}


def pure_python_forced() -> bool:
    """True when LUTE_IPC_PURE_PYTHON asks for the pure core."""
    return os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0")


@pytest.fixture(autouse=True)
def _forget_shared_links() -> object:
    """Each test starts without the process-wide session links of earlier tests (their Executors
    are gone); what those links could not confirm was the earlier test's business."""
    yield
    from lute_ipc.transport import registry

    try:
        registry.close_all()
    except Exception:
        pass


@pytest.fixture(scope="session")
def lute_package() -> None:
    """The real LUTE package (lute-lcls 0.3.0) is importable, probed in a child process (importing
    LUTE configures logging and writes os.environ). Skips without it, and fails under CI, which
    installs it for every leg but the README's verbatim commands."""
    probe = subprocess.run([sys.executable, "-c", "import lute.execution.ipc"], capture_output=True, timeout=120)
    if probe.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("lute-lcls 0.3.0 is not installed: .ci/run must install it")
        pytest.skip("lute-lcls 0.3.0 is not installed (pip install --no-deps lute-lcls==0.3.0 typing_extensions)")
