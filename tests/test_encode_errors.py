"""Clear errors for contents that cannot be sent, raised by the sender, on both cores.

An unpicklable object raises :class:`~lute_ipc.errors.UnpicklableContents` (a ``UsageError``
and a ``TypeError``), never a raw error from inside the codec; an object that needs a class
of the sender's ``__main__`` (which the Executor cannot import) raises
:class:`~lute_ipc.errors.MainModuleContents` before anything is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from types import ModuleType
from typing import Any

import pytest

from lute_ipc import _oob, codec, errors
from lute_ipc.message import Message

UNPICKLABLE = [threading.Lock(), lambda: 1, (x for x in ()), {"nested": [threading.Event()]}]


@pytest.mark.parametrize("contents", UNPICKLABLE, ids=["lock", "lambda", "generator", "nested"])
def test_unpicklable_contents_raise_a_clear_error(impl: ModuleType, contents: Any) -> None:
    msg = Message(contents, "TASK_RESULT")
    with pytest.raises(errors.UnpicklableContents) as info:
        impl.encode_frame(msg)
    assert str(info.value).startswith(f"cannot pickle Message with contents of type {type(contents).__name__}: ")
    assert isinstance(info.value, TypeError) and isinstance(info.value, errors.UsageError)
    assert info.value.__cause__ is not None
    buffer = bytearray(b"queued")
    with pytest.raises(errors.UnpicklableContents):
        impl.append_frame(buffer, msg)
    assert buffer == b"queued"  # nothing half-written
    with pytest.raises(errors.UnpicklableContents):
        codec.dumps(msg)
    with pytest.raises(errors.UnpicklableContents):
        _oob.pickle_pieces(msg)


class Local:
    """Stands for a class the Task defined in its own script."""

    def __init__(self) -> None:
        self.value = 3


def test_a_class_of_the_senders_main_module_is_refused(impl: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Local, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "Local", Local, raising=False)
    for contents in (Local(), [1, {"deep": Local()}], Local):
        msg = Message(contents, "TASK_RESULT")
        with pytest.raises(errors.MainModuleContents) as info:
            impl.encode_frame(msg)
        assert str(info.value).startswith("cannot send 'Local': it is defined in the sender's __main__ module")
        with pytest.raises(errors.MainModuleContents):
            impl.append_frame(bytearray(), msg)
        with pytest.raises(errors.MainModuleContents):
            _oob.pickle_pieces(Message([contents, b"x" * 100_000]))
    # the mere text "__main__" is fine
    assert impl.encode_frame(Message("if __name__ == '__main__':"))


SCRIPT = textwrap.dedent("""
    from lute_ipc import Message
    from lute_ipc.errors import MainModuleContents
    from lute_ipc.framing import IMPLEMENTATION, encode_frame

    class Result:
        pass

    try:
        encode_frame(Message(Result(), "TASK_RESULT"))
    except MainModuleContents as exc:
        print(IMPLEMENTATION, "refused:", exc)
""")


@pytest.mark.parametrize("pure", ["0", "1"], ids=["c", "py"])
def test_a_task_script_cannot_send_its_own_classes(pure: str) -> None:
    env = dict(os.environ, LUTE_IPC_PURE_PYTHON=pure)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "Result" in done.stdout and "importable module" in done.stdout
