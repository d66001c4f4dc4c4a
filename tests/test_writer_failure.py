"""A send that failed in the background is raised again by the Task's next call
(``FrameWriter._raise_failure``): as the same class, with the same attributes, said as earlier,
whatever that class's constructor takes."""

from __future__ import annotations

import inspect
from typing import List, Type

import pytest

from lute_ipc import errors
from lute_ipc.errors import TransportError, TunnelError
from lute_ipc.transport.writer import _said_earlier as said_earlier


class UnconfirmedSends(TransportError):
    """A subclass whose constructor does not take one message (keyword-only counts)."""

    def __init__(self, *, lost: int, sent: int) -> None:
        super().__init__(f"{lost} of {sent} message(s) were not confirmed")
        self.lost = lost
        self.sent = sent


def transport_errors() -> List[Type[TransportError]]:
    """Every TransportError class of lute_ipc.errors (the classes a link raises)."""
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, TransportError)]


def test_the_library_classes_are_all_covered() -> None:
    assert {TransportError, TunnelError} <= set(transport_errors())


@pytest.mark.parametrize("cls", transport_errors(), ids=lambda cls: cls.__name__)
def test_each_library_transport_error_is_said_again_as_itself(cls: Type[TransportError]) -> None:
    failure = cls("the link broke")
    failure.detail = 7  # type: ignore[attr-defined]
    again = said_earlier(failure)
    assert type(again) is cls
    assert str(again) == "an earlier background send failed: the link broke"
    assert again.detail == 7  # type: ignore[attr-defined]
    assert again is not failure


def test_a_subclass_without_a_message_constructor_is_said_again_with_its_attributes() -> None:
    failure = UnconfirmedSends(lost=3, sent=10)
    again = said_earlier(failure)
    assert type(again) is UnconfirmedSends and isinstance(again, OSError)
    assert (again.lost, again.sent) == (3, 10)
    assert str(again) == "an earlier background send failed: 3 of 10 message(s) were not confirmed"


def test_an_os_level_failure_is_said_with_its_errno() -> None:
    failure = TransportError(32, "Broken pipe")
    again = said_earlier(failure)
    assert type(again) is TransportError
    assert str(again) == "an earlier background send failed: [Errno 32] Broken pipe"
