"""A failed send's error names the messages ``write()`` had accepted that it dropped, as the same
class with the same attributes, whatever that class's constructor takes (``FrameWriter._flush_locked``)."""

from __future__ import annotations

from lute_ipc.errors import TransportError, TunnelError
from lute_ipc.transport.writer import _naming as naming


class UnconfirmedSends(TransportError):
    """A subclass whose constructor does not take one message (keyword-only counts)."""

    def __init__(self, *, lost: int, sent: int) -> None:
        super().__init__(f"{lost} of {sent} message(s) were not confirmed")
        self.lost = lost
        self.sent = sent


def test_the_count_is_named_and_the_class_kept() -> None:
    named = naming(TunnelError("the ssh tunnel ended"), 19)
    assert type(named) is TunnelError
    assert str(named) == "the ssh tunnel ended (19 message(s) that write() had accepted were not sent)"


def test_a_subclass_without_a_message_constructor_keeps_its_attributes() -> None:
    named = naming(UnconfirmedSends(lost=3, sent=10), 4)
    assert type(named) is UnconfirmedSends and (named.lost, named.sent) == (3, 10)
    assert str(named).endswith("(4 message(s) that write() had accepted were not sent)")


def test_a_send_that_also_ended_a_session_names_the_loss_in_all() -> None:
    """CI, stop 19: "1 message(s) sent ... were not confirmed (19 ... not sent)" left the reader to
    add 1 and 19; the error now also names the 20 as one number."""
    link_error = TransportError("the Executor closed the session: 1 message(s) sent were not confirmed")
    named = naming(link_error, 19, 20)
    assert str(named).endswith("(19 message(s) that write() had accepted were not sent; in all, 20 message(s) "
                               "that write() had accepted were not confirmed delivered)")
    assert str(naming(link_error, 19, 19)).endswith("were not sent)")


def test_the_message_of_the_raising_write_is_named() -> None:
    """A write() whose own send failed: its message is named first, then the earlier ones."""
    link_error = TransportError("the Executor closed the session (did it exit?): 0 message(s) sent were not confirmed")
    assert str(naming(link_error, 0, own=True)).endswith("(the message of this write() was not sent)")
    both = naming(link_error, 3, 3, own=True)
    assert str(both).endswith("(the message of this write() and 3 message(s) that write() had accepted were not sent)")
    assert type(both) is TransportError
