"""PipeCommunicator: a Task and its Executor talking through the child's standard streams.

Wire format (byte-compatible with LUTE)
---------------------------------------
* **Task → Executor**, one ``write(msg)``: the signal name (if any) on **stderr**, flushed,
  then ``pickle.dumps(msg.contents)`` on **stdout**, flushed (lute_ipc's ``Message`` & co. inside
  it named by LUTE's class paths when the Executor does not advertise ``LUTE_IPC_PROTOCOL``) (``use_pickle=False``: the
  contents as text, which must be ``str`` or ``None``). The Task's own ``print()`` output
  and stderr logging interleave freely with these writes.
* **Executor → Task**, ``write(msg, proc)``: the whole pickled ``Message`` on the child's
  **stdin**, pickled under LUTE's class paths so a LUTE Task recognises it (ours map them
  back); ``use_pickle=False``: the contents as text.

All parsing is done by the core (:mod:`lute_ipc.framing`): stdout by a
``MixedStreamSplitter`` (pickles and text in any order and chunking), stderr by a
``SignalTokenizer`` (signal names back to back, other text kept), the Task's stdin by a
``MixedStreamSplitter`` too. This module only moves bytes.

Blocking and non-blocking pipes (LUTE's final read)
---------------------------------------------------
``read(proc)`` follows the blocking mode of the child's stdout/stderr descriptors, as LUTE's
does. Non-blocking (LUTE's Executor sets them so at start, and so does
:class:`~lute_ipc.executor.TaskRunner`): a read takes what is there and waits at most
``wait``. **Blocking** (LUTE's Executor switches them back once the Task is over, for its
final read): a read returns only when every blocking stream reached end of file, i.e. when
the Task closed its pipes (normally by exiting), so everything it wrote until then (a
``print()`` after ``TASK_RESULT``, a traceback) is read; ``wait`` does not shorten that.
Both streams are drained together meanwhile (LUTE reads stderr to its end, then stdout: a
Task that fills stdout's pipe buffer first never finishes). An Executor that reads while the
Task runs must therefore make the pipes non-blocking, as LUTE's does.

How the Executor turns the two streams into Messages
----------------------------------------------------
Each read pass drains the child's stdout **first**, then its stderr, without blocking in
``os.read`` (``poll`` first, whatever the descriptors' mode). Because a Task
flushes a message's signal before its contents, the signal of every object seen on stdout
is already readable on stderr when stderr is read. Then, in stdout order:

1. every **pickled object** becomes ``Message(contents=object, signal=S)`` where ``S`` is the
   oldest signal not yet paired (``None`` if there is none): signals pair with objects in
   order, one each;
2. adjacent **text** read in the pass (``print()`` output) becomes one
   ``Message(contents=text)``; it takes no signal, except with ``use_pickle=False`` (a text
   Task) where it takes the oldest unpaired signal like an object does. Undecodable bytes are
   kept in that text, backslash-escaped;
3. a pickle that could not be delivered (``loads`` failed, too large, cut short by the
   end of the stream) becomes ``Message(contents=<lute_ipc.stream_items.StreamError>, signal=S)``:
   the item carries the error and the raw bytes, and it takes its signal like an object;
4. **stderr text** that is not a signal is added, as LUTE does, to the last Message of the
   pass made from stdout text or without contents: ``f"{contents} ({text})"``, or
   ``f"({text})"`` when it has no contents; an object the Task pickled (even a ``str``) is
   never altered: when the pass has no such Message the text becomes its own
   ``Message(contents=f"({text})")``, after the pass's other Messages;
5. a signal whose object has not arrived is held (a ``read()`` waits up to 0.05 s more for
   it, in ``poll``, then returns and keeps it held) until ``signal_grace`` seconds (default
   0.5) have passed, and then delivered alone as ``Message(signal=S)`` by the next read —
   but not while a pickle is arriving on stdout (a large object takes longer than the grace
   to come through the pipe: the signal waits for it); at once when stdout reaches end of
   file. Only signals written without contents by text-mode Tasks wait the whole grace.

So one ``write()`` read in one pass gives exactly LUTE's ``Message(contents, signal)``,
and nothing is lost: every object, text span, signal and error reaches the caller, in
order (only the tail of a pickle beyond ``max_pickle_size`` is skipped, after its error).
``read()`` returns one Message per call (an empty ``Message()`` when nothing waits) and
keeps the rest queued; ``has_messages`` is true while a Message is queued, a held signal
is due, or a pipe is readable. Pairing is by order only: a Task that mixes signal-less pickle writes with
signalled ones, or that writes a large (> buffer size) pickle *before* flushing its signal
as LUTE 0.3.0's Task does for big contents, can see a signal paired with a neighbour.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from . import codec
from .communicator import Communicator
from .env import executor_protocol
from .errors import CommunicatorClosed, TransportError, UndecodableBytes, UsageError
from .framing import MixedStreamSplitter, SignalTokenizer
from .message import Message, Party, require_message
from .stream_items import Item, Pickled, Signal, StreamError, Text

__all__ = ["PipeCommunicator", "READ_SIZE", "SIGNAL_GRACE", "HOLD_WAIT", "WRITE_TIMEOUT"]

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
"""Bytes asked for by each ``os.read``."""
MAX_PASS_BYTES = 16 * 1024 * 1024
"""At most this many bytes are read from one stream in one pass (then the pass assembles)."""
SIGNAL_GRACE = 0.5
"""Seconds a signal waits for its object before it is delivered alone (a Task that is
descheduled between writing a signal and its contents must not split the message)."""
HOLD_WAIT = 0.05
"""Seconds one ``read()`` waits, beyond its ``wait``, for the object of a held signal."""
WRITE_TIMEOUT = 30.0
"""Seconds ``write(msg, proc)`` waits for a child that does not read its stdin."""
_MIRROR_MODULE = b"lute_ipc.message"
"""The module of lute_ipc's mirrors of LUTE's classes, as a pickle names it."""
_END_POLL = 1.0
"""Seconds of one ``poll`` while a blocking read waits for the end of the streams (no busy loop)."""


class _Stream:
    """One readable file descriptor and its parser."""

    __slots__ = ("fd", "parser", "open")

    def __init__(self, fd: int, parser: Any) -> None:
        self.fd = fd
        self.parser = parser
        self.open = True

    def drain(self) -> List[Item]:
        """Read what is available now (never blocks); at EOF, flush the parser and close."""
        items: List[Item] = []
        total = 0
        while self.open and total < MAX_PASS_BYTES:
            if not _readable([self.fd]):
                break
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                logger.debug("pipe fd %d unreadable (%s): treated as end of stream", self.fd, exc)
                data = b""
            if not data:
                items += self.parser.flush()
                self.open = False
                break
            total += len(data)
            items += self.parser.feed(data)
        return items


class _Child:
    """Executor-side state of one Task process."""

    __slots__ = ("out", "err", "queue", "signals")

    def __init__(self, proc: subprocess.Popen[bytes], max_pickle_size: Optional[int]) -> None:
        self.out = _Stream(proc.stdout.fileno(), _splitter(max_pickle_size)) if proc.stdout else None
        self.err = _Stream(proc.stderr.fileno(), SignalTokenizer()) if proc.stderr else None
        self.queue: Deque[Message] = deque()
        self.signals: Deque[Tuple[str, float]] = deque()  # unpaired signals and when they were read

    def streams(self) -> List[_Stream]:
        return [s for s in (self.out, self.err) if s is not None and s.open]


def _stdout_open(child: _Child) -> bool:
    return child.out is not None and child.out.open


class PipeCommunicator(Communicator):
    """IPC through the Task's stdin, stdout and stderr (see the module docstring).

    Args:
        party: :attr:`Party.TASK` (writes to its stdout/stderr, reads its stdin) or
            :attr:`Party.EXECUTOR` (reads a child's stdout/stderr, writes its stdin).
        use_pickle: pickle contents (default) or send them as text (``str``/``None`` only).
        max_pickle_size: bound on an incomplete pickle buffered by the stream splitter.
        signal_grace: seconds a signal waits for its object before it is delivered alone.
        write_timeout: seconds ``write(msg, proc)`` waits for a child that does not read.
    """

    def __init__(self, party: Party = Party.TASK, use_pickle: bool = True, *,
                 max_pickle_size: Optional[int] = None, signal_grace: float = SIGNAL_GRACE,
                 write_timeout: float = WRITE_TIMEOUT) -> None:
        super().__init__(party=party, use_pickle=use_pickle)
        if signal_grace < 0 or write_timeout <= 0:
            raise UsageError("signal_grace must be >= 0 and write_timeout > 0")
        self.desc = "Communicates through stderr and stdout using pickle."
        self._max_pickle_size = max_pickle_size
        self._grace = float(signal_grace)
        self._write_timeout = float(write_timeout)
        self._closed = False
        self._children: Dict[subprocess.Popen[bytes], _Child] = {}
        # Task side: the stdin reader, created on first read.
        self._stdin: Optional[_Stream] = None
        self._stdin_queue: Deque[Message] = deque()

    # ------------------------------------------------------------------ API
    @property
    def use_pickle(self) -> bool:
        """Whether contents are pickled (``False``: text)."""
        return self._use_pickle

    @use_pickle.setter
    def use_pickle(self, use_pickle: bool) -> None:
        self._use_pickle = bool(use_pickle)

    def read(self, proc: Optional[subprocess.Popen[bytes]] = None, wait: Optional[float] = None) -> Message:
        """Return the next Message (an empty ``Message()`` when none is waiting).

        Args:
            proc: the child to read (Executor side; required there).
            wait: block up to this many seconds for data (in ``poll``); ``None`` or 0
                does not wait, except up to ``signal_grace`` for the object of a held signal.
        """
        self._check_open()
        if wait is not None and wait < 0:
            raise UsageError("wait must be >= 0 or None")
        if self._party is Party.TASK:
            return self._read_stdin(wait)
        if proc is None:
            raise UsageError("the Executor side of a PipeCommunicator reads a child: pass proc")
        child = self._child(proc)
        if not child.queue and _blocking_streams(child):
            self._read_to_end(child)
            return child.queue.popleft() if child.queue else Message()
        deadline = time.monotonic() + (wait or 0.0)
        hold_until = 0.0  # set once a held signal is seen: wait a little for its object
        while True:
            if child.queue:
                return child.queue.popleft()
            now = time.monotonic()
            if not hold_until and self._grace_left(child, now) > 0:
                hold_until = now + min(HOLD_WAIT, self._grace_left(child, now))
            end = max(deadline, hold_until)
            streams = child.streams()
            if streams and _readable([s.fd for s in streams], max(0.0, end - now)):
                self._pass(child)
            self._release_signals(child)
            if child.queue:
                return child.queue.popleft()
            if not streams or time.monotonic() >= end:
                return Message()

    def write(self, msg: Message, proc: Optional[subprocess.Popen[bytes]] = None) -> None:
        """Send ``msg``: Task side to stdout/stderr; Executor side to ``proc``'s stdin."""
        require_message(msg, "PipeCommunicator.write()")
        self._check_open()
        if self._party is Party.EXECUTOR:
            self._write_child(msg, proc)
        else:
            self._write_task(msg)

    @property
    def has_messages(self) -> bool:
        """True while a Message is queued, a held signal is due, or a pipe has bytes (or EOF) to read."""
        if self._closed:
            return False
        if self._party is Party.TASK:
            if self._stdin_queue:
                return True
            stream = self._stdin_stream()
            return stream is not None and stream.open and _readable([stream.fd])
        fds = []
        now = time.monotonic()
        for child in self._children.values():
            if child.queue or self._signal_due(child, now):
                return True
            fds += [s.fd for s in child.streams()]
        return bool(fds) and _readable(fds)

    def close(self) -> None:
        """Forget all state (the child's pipes belong to its Popen and stay open). Idempotent."""
        self._closed = True
        self._children.clear()
        self._stdin_queue.clear()

    # ------------------------------------------------------------------ Executor side
    def _check_open(self) -> None:
        if self._closed:
            raise CommunicatorClosed("this PipeCommunicator was closed")

    def _child(self, proc: subprocess.Popen[bytes]) -> _Child:
        child = self._children.get(proc)
        if child is None:
            if proc.stdout is None and proc.stderr is None:
                raise UsageError("the process has neither a stdout nor a stderr pipe (use subprocess.PIPE)")
            child = self._children[proc] = _Child(proc, self._max_pickle_size)
        return child

    def _pass(self, child: _Child) -> None:
        """Drain stdout, then stderr, and turn what came into queued Messages."""
        out_items = child.out.drain() if child.out is not None else []
        err_items = child.err.drain() if child.err is not None else []
        now = time.monotonic()
        stderr_text: List[str] = []
        for item in err_items:
            if type(item) is Signal:
                child.signals.append((item.name, now))
            else:
                stderr_text.append(str(item))
        made, from_text = self._assemble(child, out_items)
        if stderr_text:
            _attach_stderr_text(made, from_text, "".join(stderr_text))
        child.queue.extend(made)

    def _read_to_end(self, child: _Child) -> None:
        """LUTE's final read: wait until every blocking stream reaches end of file (the Task
        closed it, normally by exiting), draining all open streams meanwhile, then queue it all."""
        while _blocking_streams(child):
            if _readable([s.fd for s in child.streams()], _END_POLL):
                self._pass(child)
        self._release_signals(child)

    def _assemble(self, child: _Child, items: List[Item]) -> Tuple[List[Message], List[bool]]:
        """Messages of one pass's stdout items, and for each whether it was made from text."""
        made: List[Message] = []
        from_text: List[bool] = []
        text: List[str] = []

        def take_signal() -> Optional[str]:
            return child.signals.popleft()[0] if child.signals else None

        def end_text() -> None:
            if text:
                joined = "".join(text)
                text.clear()
                made.append(Message(contents=joined, signal=None if self._use_pickle else take_signal()))
                from_text.append(True)

        for item in items:
            kind = type(item)
            if kind is Text:
                text.append(item.text)  # type: ignore[attr-defined]
            elif kind is StreamError and isinstance(item.error, UndecodableBytes):  # type: ignore[attr-defined]
                logger.debug("Task stdout: %s", item)
                text.append(item.text)  # type: ignore[attr-defined]
            elif kind is Pickled:
                end_text()
                made.append(Message(contents=item.value, signal=take_signal()))  # type: ignore[attr-defined]
                from_text.append(False)
            else:
                end_text()
                logger.warning("Task stdout: %s", item)
                made.append(Message(contents=item, signal=take_signal()))
                from_text.append(False)
        end_text()
        return made, from_text

    def _grace_left(self, child: _Child, now: float) -> float:
        """Seconds the oldest held signal may still wait for its object (<= 0: none waits)."""
        if not child.signals or not _stdout_open(child):
            return 0.0
        return child.signals[0][1] + self._grace - now

    def _signal_due(self, child: _Child, now: float) -> bool:
        """Whether the oldest held signal must now be delivered alone.

        When stdout is closed, or when its grace is over and no pickle is arriving on stdout
        (while one is, the signal waits for it: it is most likely that pickle's).
        """
        if not child.signals:
            return False
        if not _stdout_open(child):
            return True
        return self._grace_left(child, now) <= 0 and child.out is not None and child.out.parser.buffered == 0

    def _release_signals(self, child: _Child) -> None:
        """Deliver alone the held signals whose object did not come in time (or never can)."""
        now = time.monotonic()
        while self._signal_due(child, now):
            child.queue.append(Message(signal=child.signals.popleft()[0]))

    def _write_child(self, msg: Message, proc: Optional[subprocess.Popen[bytes]]) -> None:
        if proc is None:
            raise UsageError("the Executor side of a PipeCommunicator writes to a child: pass proc")
        if proc.stdin is None:
            raise UsageError("the process has no stdin pipe (use stdin=subprocess.PIPE)")
        # Pickles use LUTE's class paths: a LUTE Task checks isinstance(x, lute.execution.ipc.Message);
        # lute_ipc Tasks map the names back to lute_ipc's classes.
        data = codec.dumps_lute_names(msg) if self._use_pickle else _text_contents(msg).encode()
        try:
            proc.stdin.flush()  # anything the caller wrote through the file object goes first
        except (BlockingIOError, ValueError):
            pass
        except OSError as exc:
            raise TransportError(f"cannot write to the Task's stdin: {exc}") from exc
        _write_all(proc.stdin.fileno(), data, self._write_timeout, proc)

    # ------------------------------------------------------------------ Task side
    def _write_task(self, msg: Message) -> None:
        signal = msg.signal or ""
        try:
            if self._use_pickle:
                data = _pickle_for_executor(msg.contents)
                out, err = _binary(sys.stdout, "stdout"), _binary(sys.stderr, "stderr")
                sys.stdout.flush()  # text print()ed before this write goes first
                sys.stderr.flush()
                if signal:
                    err.write(signal.encode())
                err.flush()  # the signal is readable before its contents (see the module docstring)
                out.write(data)
                out.flush()
            else:
                contents = _text_contents(msg)
                sys.stderr.write(signal)
                sys.stderr.flush()
                sys.stdout.write(contents)
                sys.stdout.flush()
        except BrokenPipeError as exc:
            raise TransportError("the Executor is gone: the Task's stdout/stderr pipe is closed") from exc

    def _stdin_stream(self) -> Optional[_Stream]:
        if self._stdin is None:
            try:
                fd = sys.stdin.fileno()
            except (AttributeError, ValueError, OSError):
                return None
            self._stdin = _Stream(fd, _splitter(self._max_pickle_size))
        return self._stdin

    def _read_stdin(self, wait: Optional[float]) -> Message:
        if not self._stdin_queue:
            stream = self._stdin_stream()
            if stream is not None and stream.open:
                deadline = time.monotonic() + (wait or 0.0)
                while True:
                    if _readable([stream.fd], max(0.0, deadline - time.monotonic())):
                        self._stdin_queue.extend(_task_messages(stream.drain()))
                    if self._stdin_queue or not stream.open or time.monotonic() >= deadline:
                        break
        return self._stdin_queue.popleft() if self._stdin_queue else Message()


# --------------------------------------------------------------------------- helpers
def _ready(fd_list: List[int], events: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s until one fd has ``events`` (poll: no FD_SETSIZE limit, never busy)."""
    poller = select.poll()
    for fd in fd_list:
        poller.register(fd, events)
    try:
        return bool(poller.poll(max(0.0, timeout) * 1000.0))
    except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
        return False


def _splitter(max_pickle_size: Optional[int]) -> Any:
    """A stream splitter for pickles and text (its default bound on a pickle unless one is given)."""
    options: Dict[str, Any] = {} if max_pickle_size is None else {"max_pickle_size": max_pickle_size}
    return MixedStreamSplitter(**options)


def _blocking_streams(child: _Child) -> List[_Stream]:
    """The child's open streams whose descriptor is in blocking mode (LUTE sets them so for its final read)."""
    blocking = []
    for stream in child.streams():
        try:
            if os.get_blocking(stream.fd):
                blocking.append(stream)
        except OSError:  # closed behind our back: the next drain sees the end of the stream
            pass
    return blocking


def _readable(fd_list: List[int], timeout: float = 0.0) -> bool:
    """True when a read on one of the fds would not block (data, end of file or a closed fd)."""
    return _ready(fd_list, select.POLLIN, timeout)


def _writable(fd: int, timeout: float) -> bool:
    """True when a write of up to PIPE_BUF bytes to ``fd`` would not block (or would fail at once)."""
    return _ready([fd], select.POLLOUT, timeout)


def _pickle_for_executor(contents: Any) -> bytes:
    """Pickled contents for the Executor: with LUTE's class paths when it is LUTE's (it does not
    advertise ``LUTE_IPC_PROTOCOL``) and the pickle names lute_ipc's mirrors of LUTE's classes."""
    data = codec.dumps(contents)
    if _MIRROR_MODULE in data and executor_protocol() is None:
        return codec.dumps_lute_names(contents)
    return data


def _binary(stream: Any, name: str) -> Any:
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        raise UsageError(f"sys.{name} has no binary buffer: cannot write pickled contents")
    return buffer


def _text_contents(msg: Message) -> str:
    if msg.contents is None:
        return ""
    if not isinstance(msg.contents, str):
        raise UsageError(f"Cannot send msg contents of type: {type(msg.contents)} when not using pickle!")
    return msg.contents


def _attach_stderr_text(made: List[Message], from_text: List[bool], text: str) -> None:
    """LUTE's rule: non-signal stderr text goes into contents as ``"(text)"``.

    Only into a Message made from stdout text or without contents: an object the Task
    pickled (even a ``str``) is never altered.
    """
    for msg, is_text in zip(reversed(made), reversed(from_text)):
        if is_text or msg.contents is None:
            msg.contents = f"{msg.contents} ({text})" if msg.contents else f"({text})"
            return
    made.append(Message(contents=f"({text})"))


def _task_messages(items: List[Item]) -> List[Message]:
    """Task side: what the Executor wrote to stdin, as Messages (adjacent text joined)."""
    made: List[Message] = []
    text: List[str] = []
    for item in items:
        if type(item) is Text or (type(item) is StreamError and isinstance(item.error, UndecodableBytes)):
            text.append(item.text)
            continue
        if text:
            made.append(Message(contents="".join(text)))
            text.clear()
        if type(item) is Pickled:
            value = item.value
            made.append(value if isinstance(value, Message) else Message(contents=value))
        else:
            logger.warning("Task stdin: %s", item)
            made.append(Message(contents=item))
    if text:
        made.append(Message(contents="".join(text)))
    return made


def _write_all(fd: int, data: bytes, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Write all of ``data`` to ``fd`` (blocking or not) without ever blocking past ``timeout``."""
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    try:
        chunk = select.PIPE_BUF if os.get_blocking(fd) else 1024 * 1024
    except OSError as exc:
        raise TransportError(f"cannot write to the Task's stdin: {exc}") from exc
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportError(f"the Task did not read its stdin for {timeout:g} s "
                                 f"({len(view)} of {len(data)} bytes unsent)")
        if not _writable(fd, min(remaining, 0.5)):
            if proc.poll() is not None:
                raise TransportError(f"the Task exited (code {proc.returncode}) before reading its stdin")
            continue
        try:
            written = os.write(fd, view[:chunk])
        except BlockingIOError:
            continue
        except BrokenPipeError as exc:
            raise TransportError("the Task is gone: its stdin is closed") from exc
        except OSError as exc:
            raise TransportError(f"cannot write to the Task's stdin: {exc}") from exc
        view = view[written:]
