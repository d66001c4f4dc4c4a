"""Shared by the red-team 16 tests that run LUTE itself (``run_task``): the matrix's helpers,
where the matrix can run."""

from __future__ import annotations

from types import ModuleType

import pytest


def lute_matrix() -> ModuleType:
    """``tests.lute_matrix.test_lute_matrix`` where LUTE runs with its dependencies and the LUTE
    switch is installed (``.ci/run``'s LUTE section); skips the test elsewhere, saying why."""
    matrix = pytest.importorskip("tests.lute_matrix.test_lute_matrix")
    reason = matrix._full_lute_installed()
    if reason:
        pytest.skip(reason)
    return matrix
