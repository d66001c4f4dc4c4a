"""Task-side sending, whatever the link: frame messages into a send buffer, batch, push down a link.

:class:`FrameWriter` pickles and frames each message straight into a send buffer; the
buffer goes out as one ``link.send(pieces, messages)`` when :mod:`lute_ipc.transport.batching`
says so, on :meth:`FrameWriter.flush`, :meth:`FrameWriter.confirm`, :meth:`FrameWriter.close`
and at normal interpreter exit. A message holding a large buffer (``bytes``, ``bytearray``,
numpy array, see :mod:`lute_ipc._oob`) is sent at once, scatter-gather, without copying it.

Nothing is lost quietly:

* a message over the frame limit raises :class:`~lute_ipc.errors.MessageTooLarge` in
  :meth:`FrameWriter.write`, before anything is sent;
* a send that fails in the background (the flusher thread) is kept and raised by the next
  :meth:`~FrameWriter.write`, :meth:`~FrameWriter.flush`, :meth:`~FrameWriter.confirm` or
  :meth:`~FrameWriter.close`, with the number of messages it lost;
* :meth:`FrameWriter.confirm` and :meth:`FrameWriter.close` return once the link confirmed
  delivery (session links) and raise TransportError naming the messages that were not.

Fork: a link is used only by the process that opened it. In a forked child the writer drops
the parent's buffered messages (they are the parent's) and its first send opens a link of its
own (``relink``); the parent's link is not touched. A Task killed by SIGKILL loses what was
still buffered (at most ``flush_interval`` of ``TASK_LOG``/signal-less messages); a
multiprocessing child, which ends with ``os._exit``, flushes and confirms in multiprocessing's
exit finalizers first.
"""

from __future__ import annotations

import atexit
import heapq
import logging
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, List, Optional, Set

from .. import _oob, codec
from .._framing_py import SEPARATOR
from .._send_buffer_py import FORKED, LARGE, REFUSED
from ..errors import CommunicatorClosed, MessageTooLarge, TransportError
from ..framing import (
    AUTH_TRAILER,
    PLAIN_TRAILER,
    SendBuffer,
    frame_head,
    message_pieces,
)
from ..message import Message
from . import batching
from . import process as _process
from .limits import DEFAULT_MAX_FRAME_SIZE, MAX_FLUSH_SIZE

__all__ = ["FrameWriter", "DEFAULT_FLUSH_INTERVAL", "DEFAULT_FLUSH_SIZE"]

logger = logging.getLogger("lute_ipc.transport")

DEFAULT_FLUSH_INTERVAL = 0.001
"""Seconds a written message may wait in the send buffer (the latency bound)."""
DEFAULT_FLUSH_SIZE = 64 * 1024
"""Send-buffer octets that trigger a send."""

_OUT_OF_BAND = 512 * 1024
"""From this buffer size on, the buffer is not even copied into the pickle (protocol-5 re-inlining)."""
_FLUSH, _SCHEDULE, _KEEP = batching.FLUSH, batching.SCHEDULE, batching.KEEP
_monotonic = time.monotonic


def _too_large(length: int, limit: int) -> MessageTooLarge:
    return MessageTooLarge(
        f"this message's payload is {length} bytes, over the frame limit of {limit} bytes: nothing was sent. "
        f"Raise the limit with LUTE_IPC_MAX_FRAME_SIZE (e.g. LUTE_IPC_MAX_FRAME_SIZE=1G) in the Executor's "
        "environment before it starts (its Tasks inherit it), or send such data another way (e.g. a file)",
        length=length, limit=limit)


def _naming(error: TransportError, accepted: int, lost: int = 0, own: bool = False) -> TransportError:
    """``error``, of the same class, also naming the messages its send dropped: the message of the
    :meth:`~FrameWriter.write` that raises it (``own``) and the ``accepted`` ones earlier writes
    returned from; when the link also gave up on messages it had sent (``lost`` is more), the loss
    in all."""
    in_all = f"; in all, {lost} message(s) that write() had accepted were not confirmed delivered" \
        if lost > accepted else ""
    dropped = [f"{accepted} message(s) that write() had accepted"] if accepted else []
    if own:
        dropped.insert(0, "the message of this write()")
    verb = "was" if dropped == ["the message of this write()"] else "were"
    named = _restated(error, f"{error} ({' and '.join(dropped)} {verb} not sent{in_all})")
    named.__cause__ = error.__cause__
    return named


class FrameWriter:
    """Frames messages into a send buffer and sends it in batches through a link; thread-safe.

    Args:
        link: the link (interface in :mod:`lute_ipc.transport`).
        key: legacy signed frames (``MAC;;;``) for links that need them; None: plain frames.
        flush_interval: latency bound in seconds (0: every write is sent at once).
        flush_size: buffered octets that trigger a send.
        max_message: the frame limit (payload octets); a link's own ``max_message`` (the
            Executor's, from the handshake) lowers it.
        lute_names: pickle with LUTE's class paths (``lute.execution.ipc.Message``) for LUTE peers.
        relink: makes a new link for a forked child (None: a child's write raises TransportError).
    """

    def __init__(self, link: Any, key: Optional[bytes] = None, *, flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 flush_size: int = DEFAULT_FLUSH_SIZE, max_message: int = DEFAULT_MAX_FRAME_SIZE,
                 lute_names: bool = False, relink: Optional[Callable[[], Any]] = None) -> None:
        self._link = link
        self._relink = relink
        self._key = key
        self._gather_tagger = codec.tagger(key).over if key is not None else None
        self._lute_names = lute_names
        self._max_message = max_message
        # the send buffer, its message count and the batching policy; pid: the process it belongs to
        # (a LUTE peer's frames are never signed: LUTE has no key)
        self._batch = SendBuffer(flush_interval, min(int(flush_size), MAX_FLUSH_SIZE), max_message,
                                 key=None if lute_names else key, encode=self._lute_payload if lute_names else None,
                                 now=_monotonic())
        self.flush_interval = self._batch.flush_interval
        self.flush_size = self._batch.flush_size
        self._lock = threading.Lock()
        self._closed = False
        self._failure: Optional[TransportError] = None
        self._scheduled_at = 0.0  # deadline of this writer's entry in the flusher (0: none)
        self._pid = self._batch.pid
        self.frames_sent = 0
        """Messages handed to the link."""
        self.sends = 0
        """Link sends (system calls / ZeroMQ messages) so far."""
        self.frames_lost = 0
        """Messages dropped because a send failed (each failure was raised)."""
        self.accepted_lost = 0
        """Of those, messages :meth:`write` had accepted (returned for): :meth:`close` names them all."""
        self._failure_lost = 0  # accepted messages the kept background failure dropped
        self._finished_at: Any = None  # (sends, link) the last finish_at_exit confirmed or gave up on
        self.lute_undecodable = 0
        """Messages sent to a LUTE Executor whose pickle holds LUTE's separator (see ``_lute_payload``)."""
        _writers.add(self)
        _install_exit_hook()

    @property
    def link(self) -> Any:
        """The link in use."""
        return self._link

    @property
    def max_message(self) -> int:
        """The frame limit in force: this side's, or the Executor's (from the handshake) when lower."""
        theirs = self._link.max_message
        return self._max_message if not theirs or theirs > self._max_message else theirs

    def open(self) -> None:
        """Open the link now (the handshake raises AuthenticationError on a missing or wrong key)."""
        with self._lock:
            self._own_link()
            self._link.open()

    def write(self, msg: Message) -> None:
        """Frame ``msg`` into the buffer; send now if the batching policy says so.

        Raises MessageTooLarge (nothing sent), CommunicatorClosed, or TransportError (this
        send or an earlier background send failed)."""
        with self._lock:
            if self._closed or self._failure is not None:
                self._refuse_write()
            # one call: fork check (the operating system's process id), large-buffer check, frame, frame
            # limit, count, batching decision (lute_ipc._send_buffer_py)
            decision = self._batch.append(msg, self._link.max_message)
            if decision == _KEEP:
                return
            if decision == FORKED:
                self._after_fork()
                decision = self._batch.append(msg, self._link.max_message)
            if decision == _FLUSH:
                self._flush_locked(own=1)
            elif decision == _SCHEDULE:
                _pending.add(self)
                if not self._scheduled_at:  # one flusher entry at a time; it re-arms itself if needed
                    self._scheduled_at = self._batch.deadline
                    _flusher.schedule(self, self._scheduled_at)
            elif decision == LARGE:
                self._send_large(msg, self._batch.large >= _OUT_OF_BAND)
            elif decision == REFUSED:
                raise _too_large(self._batch.refused, self.max_message)

    def _refuse_write(self) -> None:
        """write() on a closed writer, or with a background failure to raise."""
        if self._closed:
            raise CommunicatorClosed("this SocketCommunicator was closed")
        self._raise_failure()

    def flush(self) -> None:
        """Hand everything buffered to the link now; raise an earlier background failure."""
        with self._lock:
            self._raise_failure()
            if self._batch.buffer and self._pid == _process.pid():
                self._flush_locked()

    def hand_over(self, timeout: Optional[float] = None) -> None:
        """LUTE's per-message ``clear_communicator()``: flush, and raise what the link already
        knows to be lost. A link whose sends may stay queued in this process (``queues_in_process``:
        ZeroMQ) also waits for the peer's confirmation (its ``hand_over(timeout)``, else
        ``confirm(timeout)``), since a process that ends without exit handlers (``os._exit``)
        would lose them silently; a raw link does not wait: its octets are in the kernel. The
        next message then goes out at once (:meth:`~lute_ipc.transport.batching.FlushPolicy.handed_over`)."""
        with self._lock:
            if self._failure is not None:
                self._raise_failure()
            pid = self._pid
            if pid != _process.pid():
                return
            if self._batch.buffer:
                self._flush_locked()
            link = self._link
            if link.pid == pid:
                if not link.queues_in_process:
                    link.confirm(0)
                else:
                    getattr(link, "hand_over", link.confirm)(timeout)
            self._batch.handed_over()  # the Task is done for now: its next message goes at once

    def confirm(self, timeout: Optional[float] = None) -> None:
        """Flush, then wait until the link confirmed delivery of everything (see the link's ``confirm``)."""
        with self._lock:
            self._raise_failure()
            if self._pid != _process.pid() or self._link.pid != _process.pid():
                return
            if self._batch.buffer:
                self._flush_locked()
            self._link.confirm(timeout)

    def close(self, wait: bool = True) -> None:
        """Flush, confirm delivery and close the link. Idempotent. TransportError names what was lost.
        ``wait`` False: a bounded confirmation already ran out; a link that can (``abandon``) closes
        without waiting again."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _writers.discard(self)
            _pending.discard(self)
            failure, self._failure = self._failure, None
            if self._pid != _process.pid() or self._link.pid != _process.pid():
                return  # another process's link: never touched here
            errors: List[TransportError] = [] if failure is None else [failure]
            named = self._failure_lost if failure is not None else 0
            try:
                if self._batch.buffer:
                    before = self._lost_total()
                    try:
                        self._flush_locked()
                    except TransportError as exc:
                        errors.append(exc)
                        named += self._lost_total() - before
            finally:
                before = self._lost_total()
                try:
                    abandon = None if wait else getattr(self._link, "abandon", None)
                    self._link.close() if abandon is None else abandon()
                except TransportError as exc:
                    errors.append(exc)
                    named += self._lost_total() - before
            if errors:
                raise self._closing_error(errors, named)

    def _lost_total(self) -> int:
        """Messages :meth:`write` accepted that are known lost: dropped by failed sends, or sent on a
        session that ended before confirming them (the link's ``lost_unconfirmed``, if it keeps one)."""
        return self.accepted_lost + int(getattr(self._link, "lost_unconfirmed", 0))

    def _closing_error(self, errors: List[TransportError], named: int) -> TransportError:
        """One error for everything :meth:`close` found, of the first one's class, that names every
        message :meth:`write` accepted and that is known lost (earlier failures included)."""
        text = "; ".join(str(error) for error in errors)
        total = self._lost_total()
        if total > named:
            text += (f"; in all, {total} message(s) that write() accepted were not confirmed delivered (not sent, "
                     "or sent on a session that ended before confirming them; each raised when it happened)")
        if len(errors) == 1 and total <= named:
            return errors[0]
        error = _restated(errors[0], text)
        error.__cause__ = errors[-1]
        return error

    @property
    def buffered(self) -> int:
        """Messages waiting in the send buffer."""
        return self._batch.count

    # ------------------------------------------------------------------ internals
    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is not None:
            self._failure = None
            raise _said_earlier(failure) from failure

    def _own_link(self) -> None:
        """In a process other than the link's: use a new link of this process's own."""
        if self._link.pid != _process.pid():
            if self._relink is None:
                raise TransportError("this communicator's connection was opened by another process (fork): "
                                     "create a new SocketCommunicator in this process")
            self._link = self._relink()

    def _after_fork(self) -> None:
        """A forked child must not send its parent's buffered messages, nor use its link."""
        self._batch.buffer = bytearray()
        self._batch.count = 0
        self._failure = None
        _pending.discard(self)
        self._pid = self._batch.pid = os.getpid()
        if _process.pid() != self._pid:  # a fork that ran no at-fork hook (a C-level fork())
            _process._refresh()
        self._own_link()
        _finish_before_multiprocessing_exit()

    def _flush_locked(self, own: int = 0) -> None:
        """Send the buffer; ``own``: messages of it whose :meth:`write` is still running (and
        raises the failure itself). A failed send raises the link's TransportError, naming the
        messages :meth:`write` had accepted that it dropped."""
        buffer = self._batch.buffer
        count = self._batch.count
        self._batch.count = 0
        _pending.discard(self)
        before = self._lost_total()
        try:
            if self._link.pid != self._pid:
                self._own_link()
            self._link.send([buffer], count)
        except BaseException as exc:
            self.frames_lost += count
            self._batch.buffer = bytearray()  # a traceback may still hold a view of the old one
            accepted = count - own
            self.accepted_lost += accepted
            if (accepted or own) and isinstance(exc, TransportError):
                raise _naming(exc, accepted, self._lost_total() - before, own=bool(own)) from exc
            raise
        finally:
            self._batch.busy_until(_monotonic())
        if self._batch.buffer is buffer:
            del buffer[:]
        self.sends += 1
        self.frames_sent += count

    def _send_large(self, msg: Message, out_of_band: bool) -> None:
        if self._lute_names:
            payload = self._lute_payload(msg)
            pieces, size = [payload], len(payload)
        else:
            direct = message_pieces(msg)  # Message(bytes, ...): pickle's octets around the contents
            if direct is not None:
                pieces, size = direct
            elif out_of_band:  # pickle without copying the buffers
                pieces, size = _oob.pickle_pieces(msg)
            else:  # one copy (into the pickle) costs less than walking the opcodes in Python
                payload = codec.dumps(msg)
                pieces, size = [payload], len(payload)
        limit = self.max_message
        if size > limit:
            raise _too_large(size, limit)
        signed = self._gather_tagger is not None
        head = frame_head(size, authenticated=signed)
        frame: List[Any] = [head, *pieces]
        if signed:
            frame.append(self._gather_tagger(frame) + AUTH_TRAILER)  # type: ignore[misc]
        else:
            frame.append(PLAIN_TRAILER)
        if self._batch.count:
            self._flush_locked()  # a record never mixes a batch and a large frame: bounded records
        if self._link.pid != self._pid:
            self._own_link()
        try:
            self._link.send(frame, 1)
        except BaseException as exc:
            self.frames_lost += 1
            if isinstance(exc, TransportError):
                raise _naming(exc, 0, own=True) from exc
            raise
        del frame
        self.sends += 1
        self.frames_sent += 1

    def _lute_payload(self, msg: Message) -> bytes:
        """``msg`` pickled with LUTE's class paths, exactly LUTE's bytes. LUTE 0.3.0's Executor cuts
        a frame at every ``;;;`` whatever the frame's length says, so it cannot decode a message
        whose pickle holds one (random binary data of some MB usually does), and over ZeroMQ it
        loses every later message of the Task too: the message still goes (LUTE's wire), and the
        loss it will meet there is counted and logged once per writer, here where it is known."""
        payload = codec.dumps_lute_names(msg)
        if SEPARATOR in payload:
            self.lute_undecodable += 1
            if self.lute_undecodable == 1:
                logger.warning(
                    "a %d-byte message (signal %s) holds LUTE's separator ';;;' in its pickle: LUTE 0.3.0's "
                    "Executor cannot decode it (it splits frames on ';;;') and, over ZeroMQ, loses every later "
                    "message of this Task too. Run the Executor on lute_ipc (docs/MIGRATION.md, "
                    "'What LUTE itself gets wrong'); further such messages are counted, not logged",
                    len(payload), msg.signal)
        return payload

    def _flush_due(self) -> None:
        """Called by the flusher thread: send the buffer if its latency bound expired. A failure
        is kept and raised by the next write/flush/confirm/close."""
        with self._lock:
            self._scheduled_at = 0.0
            if self._closed or not self._batch.buffer or self._pid != _process.pid():
                return
            if not self._batch.due(_monotonic()):  # refilled since: wait for the new deadline
                self._scheduled_at = self._batch.deadline
                _flusher.schedule(self, self._scheduled_at)
                return
            count = self._batch.count
            before, accepted_before = self._lost_total(), self.accepted_lost
            try:
                self._flush_locked()
            except Exception as exc:
                self._failure = exc if isinstance(exc, TransportError) else \
                    _naming(TransportError(str(exc)), self.accepted_lost - accepted_before)
                self._failure_lost = self._lost_total() - before
                logger.warning("a background send of %d buffered message(s) to the Executor failed: %s "
                               "(the next write, flush or close raises it)", count, exc)

    def finish_at_exit(self) -> None:
        """At interpreter exit: flush, wait for the link's confirmation (``confirm(None)``: a ZeroMQ
        session gives up once its Executor was silent for ``linger`` seconds), and write through
        from now on; a second exit hook with nothing new to send does not wait again. A raw
        stream link then closes its connection (``rest()``); the writer stays usable: exit
        handlers that run later (``logging.shutdown`` closing a
        :class:`~lute_ipc.log_handler.SocketLogHandler`) still deliver, on a new connection."""
        with self._lock:
            if self._closed or self._pid != _process.pid() or self._link.pid != self._pid:
                return
            if self._finished_at == (self.sends, self._link) and not self._batch.buffer and self._failure is None:
                return  # an earlier exit hook confirmed (or gave up on) exactly this: no second wait
            self._finished_at = (self.sends, self._link)
            self._batch.write_through()
            self._raise_failure()
            if self._batch.buffer:
                self._flush_locked()
                self._finished_at = (self.sends, self._link)
            self._link.confirm(getattr(self._link, "exit_timeout", None))
            rest = getattr(self._link, "rest", None)  # raw stream links: nothing left open at exit
            if rest is not None:
                rest()


class _Flusher:
    """One daemon thread per process that flushes writers whose latency bound expired.

    Writers schedule themselves when their buffer stops being empty; the thread sleeps
    until the earliest deadline. One thread for all writers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._due: List[Any] = []  # heap of (deadline, serial, weakref to writer)
        self._serial = 0
        self._thread: Optional[threading.Thread] = None
        self._pid = _process.pid()
        self._sleeping_until = 0.0  # 0: running; inf: idle

    def schedule(self, writer: FrameWriter, deadline: float) -> None:
        if self._pid != _process.pid():
            self.__init__()  # type: ignore[misc]  # forked: the parent's thread is not here
        with self._lock:
            self._serial += 1
            heapq.heappush(self._due, (deadline, self._serial, weakref.ref(writer)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lute-ipc-flusher", daemon=True)
                self._thread.start()
            elif deadline < self._sleeping_until:
                self._wake.notify()

    def _run(self) -> None:
        due = self._due
        while True:
            ready = []
            with self._lock:
                while True:
                    now = time.monotonic()
                    while due and due[0][0] <= now:
                        ready.append(heapq.heappop(due)[2])
                    if ready:
                        break
                    self._sleeping_until = due[0][0] if due else float("inf")
                    self._wake.wait(None if not due else due[0][0] - now)
                self._sleeping_until = 0.0
            for ref in ready:
                writer = ref()
                if writer is not None:
                    try:
                        writer._flush_due()
                    except Exception:  # pragma: no cover - _flush_due catches; never die
                        logger.exception("flusher: unexpected error")


_flusher = _Flusher()

# ---------------------------------------------------------------------- exit and fork
_writers: weakref.WeakSet[FrameWriter] = weakref.WeakSet()
_pending: Set[FrameWriter] = set()
"""Writers holding unsent messages: referenced strongly, so a communicator dropped without
close() still has its buffer flushed (by the flusher thread, or at exit)."""
_hook_installed = False
_finalizer_pid = 0
"""The process that registered :func:`_finish_at_exit` among multiprocessing's exit finalizers."""


def _install_exit_hook() -> None:
    global _hook_installed
    if not _hook_installed:
        _hook_installed = True
        atexit.register(_finish_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_in_child)
    _finish_before_multiprocessing_exit()


def _finish_before_multiprocessing_exit() -> None:
    """Where multiprocessing is loaded, run :func:`_finish_at_exit` among its exit finalizers too:
    a multiprocessing child ends with ``os._exit`` after them, without ``atexit`` (and it clears
    the finalizers it inherited: this registers once per process, for its first writer)."""
    global _finalizer_pid
    util = sys.modules.get("multiprocessing.util")
    if util is None or _finalizer_pid == _process.pid():
        return
    _finalizer_pid = _process.pid()
    util.Finalize(None, _finish_at_exit, exitpriority=100)  # before multiprocessing's own (priority 0)


def _said_earlier(failure: TransportError) -> TransportError:
    """``failure`` said again by a later call: the same class (a dead tunnel stays a TunnelError)
    and attributes (counts of lost messages), its message prefixed."""
    return _restated(failure, f"an earlier background send failed: {failure}")


def _restated(error: TransportError, text: str) -> TransportError:
    """``error`` of the same class and attributes, saying ``text``. Made without the class's
    constructor, which need not take one message."""
    cls = type(error)
    again = cls.__new__(cls)
    again.__dict__.update(error.__dict__)
    again.args = (text,)
    return again


def _reset_in_child() -> None:
    """After fork: locks may have been held by threads that do not exist in the child, and the
    parent's buffered messages are the parent's: start afresh (links are replaced on first use)."""
    _flusher.__init__()  # type: ignore[misc]
    _pending.clear()
    for writer in list(_writers):
        writer._lock = threading.Lock()
        writer._batch.buffer = bytearray()
        writer._batch.count = 0
        writer._failure = None


def _finish_at_exit() -> None:
    """Flush and confirm every writer of this process (see :meth:`FrameWriter.finish_at_exit`);
    log what could not be delivered: there is no caller left to raise to."""
    pid = _process.pid()
    for writer in list(_writers) + [w for w in list(_pending) if w not in _writers]:
        if writer._pid != pid:
            continue
        try:
            writer.finish_at_exit()
        except Exception as exc:  # exit must go on
            logger.error("lute_ipc: at exit, messages to the Executor were not all delivered or confirmed: %s", exc)
