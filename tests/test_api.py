"""The public surface: names kept from LUTE, the twin parity contract, the selector."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys

import pytest

import lute_ipc
from lute_ipc import _framing_py, framing
from lute_ipc.message import LUTE_SIGNALS, ORIGINAL_SIGNALS, Message, Party

from .conftest import IMPLEMENTATIONS, pure_python_forced


def test_lute_names() -> None:
    assert Party.TASK.value == 0 and Party.EXECUTOR.value == 1
    assert [f.name for f in dataclasses.fields(Message)] == ["contents", "signal"]
    assert Message() == Message(None, None)
    assert ORIGINAL_SIGNALS == {"NO_PICKLE_MODE", "TASK_STARTED", "TASK_FAILED", "TASK_STOPPED", "TASK_DONE",
                                "TASK_CANCELLED", "TASK_RESULT", "TASK_LOG"}
    assert LUTE_SIGNALS == ORIGINAL_SIGNALS | {"TASK_REQUEST", "TASK_RESPONSE", "TASK_METADATA"}
    for name in ("Party", "Message", "LUTE_SIGNALS", "Communicator"):
        assert getattr(lute_ipc, name) is not None


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError):
        lute_ipc.NoSuchThing  # noqa: B018


def test_import_has_no_side_effects() -> None:
    code = ("import logging, os, sys; before = dict(os.environ); import lute_ipc; "
            "assert dict(os.environ) == before; assert not logging.getLogger().handlers; "
            "assert 'zmq' not in sys.modules, 'zmq imported eagerly'; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_twins_export_the_same_public_api() -> None:
    if IMPLEMENTATIONS["c"] is None:
        pytest.skip("extension not built")
    c = IMPLEMENTATIONS["c"]
    for name in framing.PUBLIC_API:
        assert hasattr(_framing_py, name) and hasattr(c, name), name
        py_obj, c_obj = getattr(_framing_py, name), getattr(c, name)
        if inspect.isclass(py_obj):
            # Same keyword-only constructor arguments: each is accepted alone, an unknown one is not.
            for param in inspect.signature(py_obj.__init__).parameters.values():
                if param.kind is param.KEYWORD_ONLY:
                    c_obj(**{param.name: param.default})
            with pytest.raises(TypeError):
                c_obj(no_such_option=1)
            public = {m for m in dir(py_obj) if not m.startswith("_")}
            assert public <= set(dir(c_obj)), (name, public - set(dir(c_obj)))
        else:
            py_params = list(inspect.signature(py_obj).parameters)
            assert list(inspect.signature(c_obj).parameters) == py_params, name
    for constant in ("PLAIN_HEAD", "PLAIN_TRAILER", "AUTH_HEAD", "AUTH_TRAILER", "DEFAULT_MAX_FRAME_SIZE"):
        assert getattr(c, constant) == getattr(_framing_py, constant)


def test_extension_loaded_when_expected() -> None:
    """Fails when the extension should be there (CI builds it) but the pure core was chosen."""
    if pure_python_forced():
        assert framing.IMPLEMENTATION == "python"
        return
    if os.environ.get("LUTE_IPC_REQUIRE_EXTENSIONS", "") not in ("", "0"):
        assert framing.IMPLEMENTATION == "cython", framing.IMPLEMENTATION_REASON
    assert framing.IMPLEMENTATION in ("cython", "python")


@pytest.mark.parametrize("value,expected", [("1", "python"), ("0", None), ("", None)])
def test_env_switch_selects_the_pure_core(value: str, expected: str) -> None:
    env = dict(os.environ, LUTE_IPC_PURE_PYTHON=value)
    result = subprocess.run([sys.executable, "-c", "import lute_ipc.framing as f; print(f.IMPLEMENTATION)"],
                            capture_output=True, text=True, env=env, timeout=60)
    default = "cython" if IMPLEMENTATIONS["c"] is not None else "python"
    assert result.stdout.strip() == (expected or default), result.stderr


_WITHOUT_EXTENSION = "import sys; sys.modules['lute_ipc._framing_c'] = None  # as if it was never built\n"


def _import_lute_ipc(prelude: str, pure: str) -> subprocess.CompletedProcess:
    code = prelude + ("import lute_ipc, lute_ipc.framing as f, lute_ipc.sockets, lute_ipc.task\n"
                      "print(f.IMPLEMENTATION)\n")
    env = dict(os.environ, LUTE_IPC_PURE_PYTHON=pure)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_pure_core_by_accident_warns_once() -> None:
    """No extension and no LUTE_IPC_PURE_PYTHON: one PurePythonFallbackWarning, then it works."""
    result = _import_lute_ipc(_WITHOUT_EXTENSION, pure="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"
    assert result.stderr.count("PurePythonFallbackWarning") == 1, result.stderr
    assert "LUTE_IPC_PURE_PYTHON=1" in result.stderr and "python -m lute_ipc info" in result.stderr


@pytest.mark.parametrize("prelude", ["", _WITHOUT_EXTENSION], ids=["as-built", "no-extension"])
def test_pure_core_on_purpose_does_not_warn(prelude: str) -> None:
    result = _import_lute_ipc("import warnings; warnings.simplefilter('error')\n" + prelude, pure="1")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.strip() == "python"


def test_cython_core_does_not_warn() -> None:
    if IMPLEMENTATIONS["c"] is None:
        pytest.skip("the extension is not built here")
    result = _import_lute_ipc("import warnings; warnings.simplefilter('error')\n", pure="")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.strip() == "cython"
