"""The items a pipe-stream splitter or signal tokenizer delivers, shared by both twins.

A Task's stdout mixes pickled objects (one per ``write()``) with plain text
(``print()``); its stderr mixes signal names with other text. The splitters turn those
byte streams into a list of items, in stream order:

* :class:`Pickled`: one complete pickle, decoded (``value``), even when the object is
  itself a ``str`` — so a pickled ``"hello"`` is never confused with printed text;
* :class:`Text`: a run of UTF-8 text;
* :class:`Signal`: a signal name found on stderr (:class:`SignalTokenizer` only);
* :class:`StreamError`: bytes that could not be delivered as any of the above, with the
  :mod:`lute_ipc.errors` exception that says why and the raw ``data`` (nothing is dropped).

How a stream is cut into items may depend on how it was chunked (text is emitted at the
end of every ``feed``); :func:`coalesce` gives the chunking-independent canonical form
(adjacent ``Text`` merged, adjacent undecodable-bytes errors merged).

Pure Python, no I/O: imported by the pure and the Cython twins alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, List, Optional

from .errors import UndecodableBytes

if TYPE_CHECKING:  # typing.TypeGuard is 3.10+; annotations are never evaluated here
    from typing import TypeGuard

__all__ = ["Item", "Pickled", "Text", "Signal", "StreamError", "coalesce", "undecodable_error"]


class Item:
    """Base class of every stream item."""

    __slots__ = ()


class Pickled(Item):
    """A complete pickle found in the stream.

    Attributes:
        value: the unpickled object (the raw pickle ``bytes`` when the splitter was built
            with ``loads=None``).
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Pickled and self.value == other.value

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Pickled({self.value!r})"


class Text(Item):
    """A run of decoded UTF-8 text.

    Attributes:
        text: the text.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return type(other) is Text and self.text == other.text

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Text({self.text!r})"

    def __str__(self) -> str:
        return self.text


class Signal(Item):
    """A signal name (one of :data:`lute_ipc.message.LUTE_SIGNALS`) read from stderr.

    Attributes:
        name: the signal name.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return type(other) is Signal and self.name == other.name

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Signal({self.name!r})"

    def __str__(self) -> str:
        return self.name


class StreamError(Item):
    """Bytes of the stream that form no object and no text, and why.

    Attributes:
        error: the :class:`~lute_ipc.errors.PipeStreamError` (``UndecodableBytes``,
            ``IncompletePickle``, ``PickleTooLarge``) or :class:`~lute_ipc.errors.PayloadError`
            (a complete pickle that ``loads`` refused; ``error.__cause__`` says why).
        data: the raw bytes concerned, exactly as they were in the stream.
    """

    __slots__ = ("error", "data")

    def __init__(self, error: Exception, data: bytes) -> None:
        self.error = error
        self.data = data

    @property
    def text(self) -> str:
        """``data`` decoded as UTF-8 with invalid bytes backslash-escaped (for display)."""
        return self.data.decode("utf-8", "backslashreplace")

    def __eq__(self, other: object) -> bool:
        return (type(other) is StreamError and type(self.error) is type(other.error)
                and self.data == other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StreamError({type(self.error).__name__}, {self.data[:40]!r}{'...' if len(self.data) > 40 else ''})"

    def __str__(self) -> str:
        return f"{type(self.error).__name__}: {self.error} ({len(self.data)} bytes)"


def undecodable_error(offset: int, data: bytes) -> StreamError:
    """The item for a run of bytes that are not UTF-8 (shared error factory of both twins)."""
    error = UndecodableBytes(f"{len(data)} byte(s) at stream offset {offset} are not UTF-8: {data[:16]!r}",
                             offset=offset)
    return StreamError(error, data)


def _is_undecodable(item: Optional[Item]) -> TypeGuard[StreamError]:
    return type(item) is StreamError and isinstance(item.error, UndecodableBytes)


def coalesce(items: Iterable[Item]) -> List[Item]:
    """Canonical form of an item list: adjacent ``Text`` and adjacent undecodable bytes merged.

    Two chunkings of the same stream give the same ``coalesce``\\ d items.
    """
    out: List[Item] = []
    for item in items:
        last: Optional[Item] = out[-1] if out else None
        if type(item) is Text and type(last) is Text:
            out[-1] = Text(last.text + item.text)
        elif last is not None and _is_undecodable(item) and _is_undecodable(last):
            merged = StreamError(last.error, last.data + item.data)
            out[-1] = merged
        else:
            out.append(item)
    return out

