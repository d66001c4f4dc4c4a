"""Shared fixtures: ``impl`` runs a test on both framing twins (ids ``c`` and ``py``)."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Dict, Optional

import pytest

from lute_ipc import _framing_py

_framing_c: Optional[ModuleType]
try:
    from lute_ipc import _framing_c
except ImportError:  # extension not built: the c leg skips (CI fails elsewhere if it should exist)
    _framing_c = None

IMPLEMENTATIONS: Dict[str, Optional[ModuleType]] = {"c": _framing_c, "py": _framing_py}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-cython", action="store_true", help="skip the tests of the Cython twin")


@pytest.fixture(params=["c", "py"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The framing module under test: the Cython extension or the pure-Python reference."""
    module = IMPLEMENTATIONS[request.param]
    if module is None:
        pytest.skip("the Cython extension lute_ipc._framing_c is not built")
    if request.param == "c" and request.config.getoption("--no-cython"):
        pytest.skip("--no-cython given")
    return module


@pytest.fixture
def both_impls() -> Dict[str, ModuleType]:
    """Both twins, for differential tests (skips when the extension is not built)."""
    if _framing_c is None:
        pytest.skip("the Cython extension lute_ipc._framing_c is not built")
    return {"c": _framing_c, "py": _framing_py}


def pure_python_forced() -> bool:
    """True when LUTE_IPC_PURE_PYTHON asks for the pure core."""
    return os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0")
