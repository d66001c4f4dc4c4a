"""The session protocol between lute_ipc peers, sans-IO (no sockets, threads, clocks or logging).

``docs/PROTOCOL.md`` section 6 is the specification; ``tests/vectors/session.json`` holds
byte-exact examples. In short, on one stream connection opened by the Task::

    Task      opening   "LUTE-IPC/1" task-nonce(16)
    Executor  challenge "LUTE-IPC/1" flags(1) executor-nonce(16) max-message(8)
    Task      proof     "P" HMAC(key, "lute-ipc/1 task" || task-nonce || executor-nonce)   (or 32 zeros)
    Executor  verdict   "W" HMAC(key, "lute-ipc/1 executor" || ...)  (or 32 zeros)  |  "R" length(4) reason
    then records, both ways:  type(1) length(4) body [tag(32)]
        tag = HMAC(session-key, seq(8) || type || length || body), seq counted per direction from 0
        Task:     "D" body = whole frames (MSG;;;...;;;GSM)   "Q" confirm request (empty body)
        Executor: "A" body = taken(8) refused(8)              "R" body = reason (UTF-8), then close

The Task never sends a record before the Executor's welcome, so an Executor reads at most
:data:`UNPROVEN_LIMIT` bytes from a connection that has not proven itself. Sequence numbers
are implicit and covered by the tag: a replayed, reordered, dropped or spliced record fails
its tag. Acknowledgements are cumulative counts of messages, so they never queue up.

:class:`TaskSession` and :class:`ExecutorSession` turn bytes received into events and build
the bytes to send; the transports (:mod:`lute_ipc.transport.raw_link`,
:mod:`lute_ipc.transport.raw_reader`) do the I/O.
"""

from __future__ import annotations

import hmac
import os
import struct
from typing import Any, List, Optional, Tuple, Union

from .._framing_py import FinalBuffer
from ..codec import FrameTagger
from ..errors import AuthenticationError, FrameTooLarge, ProtocolError, UsageError
from ..framing import final_buffer

__all__ = [
    "MAGIC",
    "NONCE_SIZE",
    "TAG_SIZE",
    "OPENING_SIZE",
    "CHALLENGE_SIZE",
    "PROOF_SIZE",
    "RECORD_HEAD_SIZE",
    "UNPROVEN_LIMIT",
    "FLAG_AUTH_REQUIRED",
    "FLAG_EXECUTOR_KEYED",
    "DATA",
    "CONFIRM",
    "ACK",
    "REJECT",
    "SEND",
    "BODY",
    "CONFIRM_REQUESTED",
    "ESTABLISHED",
    "ACKED",
    "REJECTED",
    "FAILED",
    "SessionError",
    "RecordRejected",
    "TaskSession",
    "ExecutorSession",
    "starts_session",
    "refusal",
    "parse_refusal",
]

MAGIC = b"LUTE-IPC/1"
"""First octets of a session connection (a LUTE frame starts ``MSG;;;``: first octet differs)."""
NONCE_SIZE = 16
TAG_SIZE = 32
OPENING_SIZE = len(MAGIC) + NONCE_SIZE
CHALLENGE_SIZE = len(MAGIC) + 1 + NONCE_SIZE + 8
PROOF_SIZE = 1 + TAG_SIZE
RECORD_HEAD_SIZE = 5
UNPROVEN_LIMIT = 4096
"""Octets an Executor buffers from a connection before it has proven itself."""
FLAG_AUTH_REQUIRED = 0x01
FLAG_EXECUTOR_KEYED = 0x02

DATA = b"D"
CONFIRM = b"Q"
ACK = b"A"
REJECT = b"R"
_PROOF = b"P"
_WELCOME = b"W"

_TASK_LABEL = b"lute-ipc/1 task"
_EXECUTOR_LABEL = b"lute-ipc/1 executor"
_SESSION_LABEL = b"lute-ipc/1 session"
_ZERO_TAG = bytes(TAG_SIZE)
_HEAD = struct.Struct(">cI")
_SEQ = struct.Struct(">Q")
_ACK_BODY = struct.Struct(">QQ")
_MAX_BODY = 0xFFFFFFFF
_MAX_REASON = 1024

# Event kinds (first item of each event tuple).
SEND = 1
"""``(SEND, bytes)``: send these octets to the peer."""
BODY = 2
"""``(BODY, bytes-like)``: Executor: the frames of a data record whose tag checked."""
CONFIRM_REQUESTED = 3
"""``(CONFIRM_REQUESTED, None)``: Executor: acknowledge once everything before it is taken."""
ESTABLISHED = 4
"""``(ESTABLISHED, None)``: the handshake succeeded."""
ACKED = 5
"""``(ACKED, (taken, refused))``: Task: cumulative counts from the Executor."""
REJECTED = 6
"""``(REJECTED, reason)``: Task: the Executor refused the session or a record and closes."""
FAILED = 7
"""``(FAILED, error)``: the peer broke the protocol; close the connection."""

Buffer = Union[bytes, bytearray, memoryview]
Event = Tuple[int, Any]


class SessionError(ProtocolError):
    """The peer broke the session protocol (unexpected octets, bad record type or size)."""


class RecordRejected(AuthenticationError):
    """A record's tag did not check: forged, replayed, reordered or spliced from another connection."""


def starts_session(prefix: Buffer) -> bool:
    """True when ``prefix`` (the first octets of a connection, at least one) can start a session."""
    n = min(len(prefix), len(MAGIC))
    return bytes(prefix[:n]) == MAGIC[:n]


def refusal(reason: str) -> bytes:
    """An unkeyed refusal (``R`` length reason): the verdict of a refused handshake, also sent to a
    connection whose LUTE frames are refused."""
    data = reason.encode("utf-8", "replace")[:_MAX_REASON]
    return _HEAD.pack(REJECT, len(data)) + data


def parse_refusal(data: bytes) -> Optional[str]:
    """The reason of a complete refusal at the start of ``data``, else None."""
    if len(data) < RECORD_HEAD_SIZE or data[:1] != REJECT:
        return None
    length = _HEAD.unpack_from(data)[1]
    if length > _MAX_REASON or len(data) < RECORD_HEAD_SIZE + length:
        return None
    return data[RECORD_HEAD_SIZE:RECORD_HEAD_SIZE + length].decode("utf-8", "replace")


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), "sha256").digest()


def session_key(key: bytes, task_nonce: bytes, executor_nonce: bytes) -> bytes:
    """The per-connection key of record tags."""
    return _mac(key, _SESSION_LABEL, task_nonce, executor_nonce)


class _Records:
    """Tags and counts the records of one direction (``tagger`` None: unkeyed session)."""

    __slots__ = ("tagger", "seq")

    def __init__(self, tagger: Optional[FrameTagger]) -> None:
        self.tagger = tagger
        self.seq = 0

    def tag(self, head: bytes, body_pieces: List[Any]) -> bytes:
        tagger = self.tagger
        seq = self.seq
        self.seq = seq + 1
        if tagger is None:
            return b""
        return tagger.over([_SEQ.pack(seq), head, *body_pieces])

    def encode(self, kind: bytes, body: bytes) -> bytes:
        head = _HEAD.pack(kind, len(body))
        return head + body + self.tag(head, [body])


class _Parser:
    """Splits incoming records (after the handshake) and checks their tags, in order."""

    __slots__ = ("records", "limit", "_pending", "_body", "_filled", "_head")

    def __init__(self, records: _Records, limit: int) -> None:
        self.records = records
        self.limit = limit
        self._pending = bytearray()  # octets of an incomplete record head
        # An incomplete record: its final buffer (body and tag, allocated whole once its head is
        # read), how much of it is filled, and its head.
        self._body: Optional[FinalBuffer] = None
        self._filled = 0
        self._head = b""

    @property
    def buffered(self) -> int:
        return len(self._pending) + self._filled

    def pending_buffer(self) -> Optional[memoryview]:
        """A writable view of exactly what the record in progress lacks (None: no record in progress)."""
        return None if self._body is None else memoryview(self._body)[self._filled:]

    def commit(self, size: int, out: List[Tuple[bytes, Buffer]]) -> Optional[ProtocolError]:
        """``size`` octets were written at the start of :meth:`pending_buffer`: like :meth:`feed`."""
        room = 0 if self._body is None else len(self._body) - self._filled
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= room:
            raise UsageError(f"received() takes the octets written into receive_buffer(), 0 to {room}, "
                             f"not {size!r}")
        self._filled += size
        return self._complete(out)

    def _complete(self, out: List[Tuple[bytes, Buffer]]) -> Optional[ProtocolError]:
        body = self._body
        if body is None or self._filled < len(body):
            return None
        self._body = None
        self._filled = 0
        return self._check(self._head, memoryview(body), 0 if self.records.tagger is None else TAG_SIZE, out)

    def feed(self, data: Buffer, out: List[Tuple[bytes, Buffer]]) -> Optional[ProtocolError]:
        """Append complete ``(type, body)`` records to ``out``; return an error (then stop) or None."""
        view = memoryview(data).cast("B")
        pos, end = 0, len(view)
        tag_size = 0 if self.records.tagger is None else TAG_SIZE
        while pos < end:
            body = self._body
            if body is not None:  # filling a large record
                take = min(len(body) - self._filled, end - pos)
                body[self._filled:self._filled + take] = view[pos:pos + take]
                self._filled += take
                pos += take
                if self._filled < len(body):
                    break
                error = self._complete(out)
                if error is not None:
                    return error
                continue
            if self._pending or end - pos < RECORD_HEAD_SIZE:
                want = RECORD_HEAD_SIZE - len(self._pending)
                self._pending += view[pos:pos + want]
                pos += min(want, end - pos)
                if len(self._pending) < RECORD_HEAD_SIZE:
                    break
                head = bytes(self._pending)
                self._pending.clear()
            else:
                head = bytes(view[pos:pos + RECORD_HEAD_SIZE])
                pos += RECORD_HEAD_SIZE
            _kind, length = _HEAD.unpack(head)
            if length > self.limit:
                return FrameTooLarge(f"a session record announces {length} octets, over the limit of "
                                     f"{self.limit}", length=length, limit=self.limit)
            size = length + tag_size
            if end - pos >= size:  # whole record in this chunk: no copy into a buffer
                record = view[pos:pos + size]
                pos += size
                error = self._check(head, record, tag_size, out)
                if error is not None:
                    return error
            else:
                self._head = head
                self._body = final_buffer(size)
                self._filled = end - pos
                self._body[:self._filled] = view[pos:end]
                pos = end
        return None

    def _check(self, head: bytes, record: Buffer, tag_size: int, out: List[Tuple[bytes, Buffer]]) -> \
            Optional[ProtocolError]:
        records = self.records
        size = len(record) - tag_size
        body = record[:size] if tag_size else record
        if tag_size:
            expected = records.tag(head, [body])
            if not hmac.compare_digest(expected, bytes(record[size:])):
                return RecordRejected(f"record #{records.seq - 1} ({head[:1]!r}, {size} octets) failed its tag: "
                                      "forged, replayed, reordered or from another connection")
        else:
            records.seq += 1
        out.append((head[:1], body))
        return None


class _Endpoint:
    """What both sides of a session hold: the key, this side's nonce, the handshake's state and,
    once established, the records out (tagged and numbered) and the parser of those in."""

    def __init__(self, key: Optional[bytes], nonce: Optional[bytes]) -> None:
        self.key = key
        self.nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
        self.keyed = False
        self._buffer = bytearray()  # octets of an incomplete handshake message
        self._state = 0  # 0: awaiting the peer's first message, 1: its second, 2: established, 3: dead
        self._out: Optional[_Records] = None
        self._parser: Optional[_Parser] = None

    def _establish(self, session_key_: Optional[bytes], max_record_in: int) -> None:
        """Switch to records: tagged under ``session_key_`` (None: an unkeyed session)."""
        def records() -> _Records:
            return _Records(None if session_key_ is None else FrameTagger(session_key_))

        self._out = records()
        self._parser = _Parser(records(), max_record_in)
        self._state = 2

    def receive_buffer(self) -> Optional[memoryview]:
        """Where the rest of the record in progress goes: a writable view of exactly the octets it
        lacks (``sock.recv_into(view)``, then :meth:`received`), so a large record is received
        with no copy. None when no record is in progress: use ``receive()``. Valid until the next
        ``receive()`` or :meth:`received`."""
        return self._parser.pending_buffer() if self._state == 2 and self._parser is not None else None

    def received(self, size: int) -> List[Event]:
        """``size`` octets were written at the start of :meth:`receive_buffer`'s view: the events
        they complete, as ``receive()`` would return."""
        events: List[Event] = []
        if self._state != 2 or self._parser is None:
            if size:
                raise UsageError("received() without a receive_buffer()")
            return events
        self._records_in(size, events)
        return events

    def _records_in(self, data: Union[Buffer, int], events: List[Event]) -> None:
        """Parse and check the peer's records (``data``: octets, or how many were written into the
        parser's buffer); each goes to :meth:`_record_in` (False: stop)."""
        parser = self._parser
        assert parser is not None
        records: List[Tuple[bytes, Buffer]] = []
        error = parser.commit(data, records) if isinstance(data, int) else parser.feed(data, records)
        for kind, body in records:
            if not self._record_in(kind, body, events):
                return
        if error is not None:
            self._fail(events, error)

    def _record_in(self, kind: bytes, body: Buffer, events: List[Event]) -> bool:
        """Turn one checked record into events; False ends the session (this side's events say why)."""
        raise NotImplementedError

    def _fail(self, events: List[Event], error: ProtocolError) -> List[Event]:
        self._state = 3
        events.append((FAILED, error))
        return events


class TaskSession(_Endpoint):
    """The Task's side of one session connection.

    Args:
        key: the per-run key (``LUTE_IPC_KEY``) or None.
        nonce: the Task's nonce (tests give one; default: fresh random octets).
    """

    def __init__(self, key: Optional[bytes], nonce: Optional[bytes] = None) -> None:
        super().__init__(key, nonce)
        self.executor_nonce = b""
        self.flags = 0
        self.max_message = 0
        """The Executor's frame limit (payload octets), known once the challenge arrived."""
        self.established = False

    def opening(self) -> bytes:
        """The octets that open the connection."""
        return MAGIC + self.nonce

    def receive(self, data: Buffer) -> List[Event]:
        """Feed octets from the Executor; return events (SEND, ESTABLISHED, ACKED, REJECTED, FAILED)."""
        events: List[Event] = []
        if self._state == 3:
            return events
        if self._state == 2:
            self._records_in(data, events)
            return events
        self._buffer += data
        if self._state == 0:
            if len(self._buffer) < CHALLENGE_SIZE:
                return events
            challenge = bytes(self._buffer[:CHALLENGE_SIZE])
            del self._buffer[:CHALLENGE_SIZE]
            if challenge[:len(MAGIC)] != MAGIC:
                return self._fail(events, SessionError("the Executor's answer is not a lute_ipc/1 challenge"))
            pos = len(MAGIC)
            self.flags = challenge[pos]
            self.executor_nonce = challenge[pos + 1:pos + 1 + NONCE_SIZE]
            self.max_message = _SEQ.unpack_from(challenge, pos + 1 + NONCE_SIZE)[0]
            required = bool(self.flags & FLAG_AUTH_REQUIRED)
            executor_keyed = bool(self.flags & FLAG_EXECUTOR_KEYED)
            if required and self.key is None:
                return self._fail(events, AuthenticationError(
                    "the Executor requires authentication and LUTE_IPC_KEY is not set in this Task: start the "
                    "Task from its Executor (which exports LUTE_IPC_KEY) or copy the Executor's LUTE_IPC_KEY"))
            self.keyed = self.key is not None and executor_keyed
            proof = _mac(self.key, _TASK_LABEL, self.nonce, self.executor_nonce) \
                if self.keyed and self.key is not None else _ZERO_TAG
            events.append((SEND, _PROOF + proof))
            self._state = 1
        if self._state == 1:
            if not self._buffer:
                return events
            kind = self._buffer[:1]
            if kind == REJECT:
                if len(self._buffer) < RECORD_HEAD_SIZE:
                    return events
                length = _HEAD.unpack_from(self._buffer)[1]
                if len(self._buffer) < RECORD_HEAD_SIZE + min(length, _MAX_REASON):
                    return events
                reason = bytes(self._buffer[RECORD_HEAD_SIZE:RECORD_HEAD_SIZE + min(length, _MAX_REASON)])
                self._state = 3
                events.append((REJECTED, reason.decode("utf-8", "replace")))
                return events
            if kind != _WELCOME:
                return self._fail(events, SessionError("the Executor's verdict is neither a welcome nor a refusal"))
            if len(self._buffer) < PROOF_SIZE:
                return events
            answer = bytes(self._buffer[1:PROOF_SIZE])
            rest = bytes(self._buffer[PROOF_SIZE:])
            self._buffer.clear()
            skey = None
            if self.keyed:
                assert self.key is not None
                expected = _mac(self.key, _EXECUTOR_LABEL, self.nonce, self.executor_nonce)
                if not hmac.compare_digest(expected, answer):
                    return self._fail(events, AuthenticationError(
                        "the peer at the Executor's address does not know LUTE_IPC_KEY: it is not this Task's "
                        "Executor"))
                skey = session_key(self.key, self.nonce, self.executor_nonce)
            self._establish(skey, _MAX_REASON + _ACK_BODY.size)
            self.established = True
            events.append((ESTABLISHED, None))
            if rest:
                self._records_in(rest, events)
        return events

    def record(self, kind: bytes, pieces: List[Any], size: int) -> Tuple[bytes, bytes]:
        """Head and tail (tag) to send around a record whose body is ``pieces`` (``size`` octets)."""
        out = self._out
        if out is None:
            raise SessionError("no record can be sent before the Executor's welcome")
        if size > _MAX_BODY:
            raise FrameTooLarge(f"a record holds at most {_MAX_BODY} octets", length=size, limit=_MAX_BODY)
        head = _HEAD.pack(kind, size)
        return head, out.tag(head, pieces)

    def confirm_request(self) -> bytes:
        """A CONFIRM record: the Executor answers with an acknowledgement once it took everything before it."""
        head, tag = self.record(CONFIRM, [], 0)
        return head + tag

    @property
    def records_sent(self) -> int:
        return 0 if self._out is None else self._out.seq

    def _record_in(self, kind: bytes, body: Buffer, events: List[Event]) -> bool:
        if kind == ACK and len(body) == _ACK_BODY.size:
            events.append((ACKED, _ACK_BODY.unpack(bytes(body))))
            return True
        if kind == REJECT:
            self._state = 3
            events.append((REJECTED, bytes(body).decode("utf-8", "replace")))
            return False
        self._fail(events, SessionError(f"unexpected record {kind!r} from the Executor"))
        return False


class ExecutorSession(_Endpoint):
    """The Executor's side of one session connection (created once the opening's first octets were seen).

    Args:
        key: the Executor's key, or None.
        require_auth: refuse Tasks that do not prove the key.
        max_message: the frame limit (payload octets) announced to the Task.
        max_record: largest record body accepted (frames of a batch, or one large frame).
        nonce: the Executor's nonce (tests give one; default: fresh random octets).
    """

    def __init__(self, key: Optional[bytes], *, require_auth: bool, max_message: int, max_record: int,
                 nonce: Optional[bytes] = None) -> None:
        super().__init__(key, nonce)
        self.require_auth = require_auth
        self.max_message = max_message
        self.task_nonce = b""
        self.proven = False
        self._max_record = max_record

    @property
    def buffered(self) -> int:
        """Octets held for an incomplete handshake message or record."""
        return len(self._buffer) + (0 if self._parser is None else self._parser.buffered)

    def receive(self, data: Buffer) -> List[Event]:
        """Feed octets from the Task; return events (SEND, ESTABLISHED, BODY, CONFIRM_REQUESTED, FAILED)."""
        events: List[Event] = []
        state = self._state
        if state == 2:
            self._records_in(data, events)
            return events
        if state == 3:
            return events
        self._buffer += data
        if len(self._buffer) > UNPROVEN_LIMIT:
            return self._fail(events, SessionError(
                f"more than {UNPROVEN_LIMIT} octets before the session was established"))
        if self._state == 0:
            if not starts_session(self._buffer):
                return self._fail(events, SessionError("not a lute_ipc/1 session opening"))
            if len(self._buffer) < OPENING_SIZE:
                return events
            self.task_nonce = bytes(self._buffer[len(MAGIC):OPENING_SIZE])
            del self._buffer[:OPENING_SIZE]
            flags = (FLAG_AUTH_REQUIRED if self.require_auth else 0) | (FLAG_EXECUTOR_KEYED if self.key else 0)
            events.append((SEND, MAGIC + bytes([flags]) + self.nonce + _SEQ.pack(self.max_message)))
            self._state = 1
        if self._state == 1:
            if len(self._buffer) < PROOF_SIZE:
                return events
            if self._buffer[:1] != _PROOF:
                return self._fail(events, SessionError("the Task's second message is not a proof"))
            proof = bytes(self._buffer[1:PROOF_SIZE])
            rest = bytes(self._buffer[PROOF_SIZE:])
            self._buffer.clear()
            key = self.key
            if proof == _ZERO_TAG:
                if self.require_auth:
                    return self._refuse(events, AuthenticationError(
                        "the Task did not prove the key (is LUTE_IPC_KEY set in its environment?)"),
                        "authentication required: LUTE_IPC_KEY is not set in the Task")
                self.keyed = False
            elif key is None:
                self.keyed = False  # the Task has a key, this Executor none: nothing to check against
            else:
                expected = _mac(key, _TASK_LABEL, self.task_nonce, self.nonce)
                if not hmac.compare_digest(expected, proof):
                    return self._refuse(events, AuthenticationError(
                        "the Task's proof does not match this Executor's key (wrong LUTE_IPC_KEY)"),
                        "wrong key: the Task's LUTE_IPC_KEY is not this Executor's")
                self.keyed = True
            if self.keyed:
                assert key is not None
                answer = _mac(key, _EXECUTOR_LABEL, self.task_nonce, self.nonce)
                self._establish(session_key(key, self.task_nonce, self.nonce), self._max_record)
            else:
                answer = _ZERO_TAG
                self._establish(None, self._max_record)
            events.append((SEND, _WELCOME + answer))
            self.proven = True
            events.append((ESTABLISHED, None))
            if rest:
                self._records_in(rest, events)
        return events

    def ack(self, taken: int, refused: int) -> bytes:
        """An acknowledgement: ``taken`` messages delivered, ``refused`` rejected, since the session began."""
        assert self._out is not None
        return self._out.encode(ACK, _ACK_BODY.pack(taken, refused))

    def reject(self, reason: str) -> bytes:
        """A refusal record (the connection is closed after it)."""
        if self._out is None:
            return refusal(reason)
        return self._out.encode(REJECT, reason.encode("utf-8", "replace")[:_MAX_REASON])

    def _record_in(self, kind: bytes, body: Buffer, events: List[Event]) -> bool:
        if kind == DATA:
            events.append((BODY, body))
            return True
        if kind == CONFIRM:
            events.append((CONFIRM_REQUESTED, None))
            return True
        self._fail(events, SessionError(f"unexpected record {kind!r} from the Task"))
        return False

    def _refuse(self, events: List[Event], error: ProtocolError, reason: str) -> List[Event]:
        events.append((SEND, self.reject(reason)))
        return self._fail(events, error)
