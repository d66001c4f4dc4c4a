"""One exception hierarchy for everything lute_ipc raises or reports.

Both framing implementations (Cython and pure Python) raise and report these same
classes. The hierarchy separates the two sides of a conversation, as h11 does:

* :class:`ProtocolError` and its subclasses: the **peer** sent something wrong
  (garbage, a bad length, an unpicklable payload, a bad authentication tag). The
  core never raises these out of ``feed()``; it counts them and hands them to the
  ``on_error`` callback, then keeps going.
* :class:`UsageError`: **our caller** did something wrong (bad argument, wrong
  party, use after close).
* :class:`ConfigurationError`: the environment or options cannot work (missing
  ``LUTE_EXECUTOR_HOST``, no key on TCP, ...).
* :class:`TransportError`: an operating-system level failure while moving bytes.

Builtin bases are added where they help callers that already catch them
(``FrameTooLarge`` is a ``ValueError``, ``TransportError`` an ``OSError``...).
This module imports nothing from lute_ipc.
"""

from __future__ import annotations

import pickle
from typing import Optional

__all__ = [
    "LuteIPCError",
    "ProtocolError",
    "FramingError",
    "BadHeader",
    "BadTrailer",
    "FrameTooLarge",
    "TruncatedFrame",
    "PayloadError",
    "AuthenticationError",
    "ForbiddenClass",
    "PipeStreamError",
    "IncompletePickle",
    "PickleTooLarge",
    "UndecodableBytes",
    "UsageError",
    "ConfigurationError",
    "TransportError",
    "TunnelError",
    "CommunicatorClosed",
    "RequestTimeout",
    "MessageTooLarge",
    "PurePythonFallbackWarning",
    "RestrictedRefusal",
    "ForbiddenCall",
    "ForbiddenBuild",
    "BudgetExceeded",
    "UnpicklableContents",
    "MainModuleContents",
    "SessionError",
]


class LuteIPCError(Exception):
    """Base class of every error lute_ipc raises or reports."""


# --------------------------------------------------------------------------- peer's fault
class ProtocolError(LuteIPCError):
    """The peer sent bytes that break the protocol.

    Attributes:
        offset: position in the stream (bytes fed since the decoder was created)
            where the offending region starts, or ``None`` when unknown.
    """

    def __init__(self, message: str, *, offset: Optional[int] = None) -> None:
        super().__init__(message)
        self.offset = offset


class FramingError(ProtocolError, ValueError):
    """A socket frame could not be parsed; the decoder resynchronises."""


class BadHeader(FramingError):
    """Bytes where a frame head (``MSG;;;<length>;;;``) was expected are not one."""


class BadTrailer(FramingError):
    """The bytes after ``length`` payload bytes are not the frame trailer."""


class FrameTooLarge(FramingError):
    """A frame announces a payload longer than ``max_frame_size``."""

    def __init__(self, message: str, *, offset: Optional[int] = None,
                 length: Optional[int] = None, limit: Optional[int] = None) -> None:
        super().__init__(message, offset=offset)
        self.length = length
        self.limit = limit


class TruncatedFrame(FramingError):
    """The stream ended (EOF) inside a frame. ``pending`` holds the bytes that were buffered."""

    def __init__(self, message: str, *, offset: Optional[int] = None, pending: bytes = b"") -> None:
        super().__init__(message, offset=offset)
        self.pending = pending


class PayloadError(ProtocolError, ValueError):
    """A well-framed payload could not be decoded (unpickling failed).

    Nothing is lost: ``payload`` holds the raw bytes and ``__cause__`` the original error.
    """

    def __init__(self, message: str, *, offset: Optional[int] = None, payload: bytes = b"") -> None:
        super().__init__(message, offset=offset)
        self.payload = payload


class AuthenticationError(ProtocolError):
    """A frame carries a bad authentication tag, or none where one is required."""


class ForbiddenClass(pickle.UnpicklingError, LuteIPCError):
    """The restricted unpickler refused a global (class or function) not on its allow-list."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"global {module}.{name} is not on the allow-list of the restricted unpickler")
        self.module = module
        self.name = name


class PipeStreamError(ProtocolError):
    """Base of errors found in a Task's stdout/stdin pipe stream (mixed pickles and text)."""


class IncompletePickle(PipeStreamError):
    """The stream ended inside a pickle. ``data`` holds its bytes, nothing is dropped."""

    def __init__(self, message: str, *, offset: Optional[int] = None, data: bytes = b"") -> None:
        super().__init__(message, offset=offset)
        self.data = data


class PickleTooLarge(PipeStreamError, ValueError):
    """An incomplete pickle grew beyond the splitter's ``max_pickle_size``."""


class UndecodableBytes(PipeStreamError, UnicodeError):
    """Bytes in the text part of a pipe stream are not valid UTF-8 (they are delivered escaped)."""


# --------------------------------------------------------------------------- caller's fault
class UsageError(LuteIPCError, ValueError):
    """The caller used the API wrongly (bad argument, wrong party, use after close)."""


class ConfigurationError(LuteIPCError, RuntimeError):
    """Options or environment variables make the requested set-up impossible."""


class CommunicatorClosed(UsageError):
    """The communicator was used after ``clear_communicator()``/``__exit__``."""


# --------------------------------------------------------------------------- I/O
class TransportError(LuteIPCError, OSError):
    """Moving bytes failed at the operating-system level (connect, send, bind...)."""


class TunnelError(TransportError):
    """The ssh tunnel to the Executor's host could not be opened or died."""


class RequestTimeout(LuteIPCError, TimeoutError):
    """No reply to a request arrived within the timeout."""


class MessageTooLarge(FrameTooLarge):
    """A Task's message is over the frame limit: :meth:`write` refused it before sending anything.

    ``length`` is the payload size, ``limit`` the limit; the message says how to raise it
    (``LUTE_IPC_MAX_FRAME_SIZE``).
    """


# --------------------------------------------------------------------------- warnings
class PurePythonFallbackWarning(RuntimeWarning):
    """The pure-Python core is in use although ``LUTE_IPC_PURE_PYTHON`` does not ask for it
    (the Cython extension was not built or cannot be loaded): same behaviour, much slower.
    Emitted once, at import; ``python -m lute_ipc info`` says why."""


# --------------------------------------------------------------------------- restricted decoding, encoding
class RestrictedRefusal(pickle.UnpicklingError, LuteIPCError):
    """The restricted unpickler refused a payload (a call, a state or a cost it does not allow).

    Readers report it as the payload's :class:`PayloadError` (its ``__cause__``) and go on.
    Unknown globals are refused with :class:`ForbiddenClass`.
    """


class ForbiddenCall(RestrictedRefusal):
    """A call the restricted unpickler does not make: a callable off the allow-list, or an
    allowed constructor with arguments of the wrong types or sizes."""


class ForbiddenBuild(RestrictedRefusal):
    """A BUILD (state or attributes) on something other than an instance of an allowed class."""


class BudgetExceeded(RestrictedRefusal):
    """A payload would cost more than its budget: bytes, items, or digits of a number."""


class UnpicklableContents(UsageError, TypeError):
    """An object given to be sent cannot be pickled (a lock, a generator, a local class...).

    Raised by the sending side before anything is written; ``__cause__`` holds pickle's error.
    """


class MainModuleContents(UnpicklableContents):
    """An object to be sent needs a class or function of the sender's ``__main__`` module,
    which the receiving process cannot import: move it into an importable module."""


class SessionError(ProtocolError):
    """A session message breaks the session protocol: no valid batch header, or a batch number
    that is not the next one of its connection (replayed, reordered or spliced)."""
