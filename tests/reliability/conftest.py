"""Fixtures of the reliability suite (``pytest -m reliability``; CI runs it with everything else).

Sizes scale with ``LUTE_IPC_RELIABILITY_SCALE`` (a float, default 1.0: the documented CI
sizes; e.g. 0.05 while developing on a busy machine).
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.reliability.harness import Group

TRANSPORTS = [
    pytest.param((False, False), id="raw-unix"),
    pytest.param((False, True), id="raw-tcp"),
    pytest.param((True, False), id="zmq-unix"),
    pytest.param((True, True), id="zmq-tcp"),
]
"""``(use_zmq, tcp)`` of every transport, for ``parametrize("transport", TRANSPORTS)``."""


def scale() -> float:
    try:
        return max(0.001, float(os.environ.get("LUTE_IPC_RELIABILITY_SCALE", "1")))
    except ValueError:
        return 1.0


def pure_python() -> bool:
    return os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0")


@pytest.fixture(autouse=True)
def _clean_lute_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LUTE_") and name not in ("LUTE_IPC_PURE_PYTHON", "LUTE_IPC_RELIABILITY_SCALE"):
            monkeypatch.delenv(name)


@pytest.fixture
def group() -> Iterator[Group]:
    """Child processes of one test, killed (whole process groups) in teardown, always."""
    g = Group()
    try:
        yield g
    finally:
        g.cleanup()
