"""What lute_ipc puts in ZeroMQ messages, sans-IO: session batch headers and acknowledgements,
the split of a send buffer into batches that fit the receiver's limit, and the CURVE keys
derived from ``LUTE_IPC_KEY``. Plain functions: no socket, no thread, no clock.

Session messages (DEALER -> ROUTER), one per batch, multipart::

    [header: b"B" + sequence (u64 BE) + messages (u32 BE)] [part] [part] ...

The parts, concatenated, are whole frames ``MSG;;;<len>;;;<pickle>;;;GSM``; each part holds at
most :data:`PART_SIZE` bytes. Sequence numbers start at 1 on every connection and grow by one
per batch. Acknowledgements (ROUTER -> DEALER)::

    [b"A" + sequence (u64 BE) + delivered (u64 BE)]

``sequence``: every batch up to this one was taken (its messages are in the Executor's queue,
or were rejected); ``delivered``: messages of this connection put in the queue so far.
"""

from __future__ import annotations

import hmac
import struct
from typing import Any, List, NamedTuple, Sequence, Tuple, Union

from ..errors import FrameTooLarge

__all__ = [
    "PART_SIZE",
    "PART_LIMIT",
    "FRAME_OVERHEAD",
    "HANDSHAKE_IVL",
    "BATCH_HEADER",
    "ACK",
    "encode_batch_header",
    "decode_batch_header",
    "encode_ack",
    "decode_ack",
    "split_batch",
    "parts_of",
    "CurveKeys",
    "curve_keys",
]

Buffer = Union[bytes, bytearray, memoryview]

PART_SIZE = 64 * 1024
"""Largest part of a session message. The session socket refuses larger ZeroMQ frames, so a
connection that has not completed its CURVE handshake can make the Executor hold at most this
much (libzmq applies ``MAXMSGSIZE`` to every frame, handshake commands included)."""
PART_LIMIT = PART_SIZE + 1024
"""``MAXMSGSIZE`` of the session socket: a part plus CURVE's box overhead; also bounds the
handshake commands (HELLO is 200 bytes, INITIATE a few hundred)."""
HANDSHAKE_IVL = 2.0
"""Seconds a connection to the Executor's ZeroMQ sockets may take to complete the ZMTP (and
CURVE) handshake (``ZMQ_HANDSHAKE_IVL``; libzmq's default is 30 s): a lute_ipc Task completes
it in a few round trips; an idle connection then gives its descriptor back."""
FRAME_OVERHEAD = 128
"""Upper bound of head + length + tag + trailer bytes around a payload."""

BATCH_HEADER = struct.Struct(">cQI")
ACK = struct.Struct(">cQQ")
_BATCH_TAG = b"B"
_ACK_TAG = b"A"
_HEADS = (b"MSG;;;", b"MAC;;;")
_SEP = b";;;"
_TAG_SIZE = 32
_TRAILER_SIZE = 6
_MAX_DIGITS = 20


def encode_batch_header(sequence: int, messages: int) -> bytes:
    """The first part of a session message."""
    return BATCH_HEADER.pack(_BATCH_TAG, sequence, messages)


def decode_batch_header(data: Buffer) -> Tuple[int, int]:
    """``(sequence, messages)`` of a batch header; ValueError when ``data`` is not one."""
    if len(data) != BATCH_HEADER.size:
        raise ValueError(f"a batch header has {BATCH_HEADER.size} bytes, not {len(data)}")
    tag, sequence, messages = BATCH_HEADER.unpack(data)
    if tag != _BATCH_TAG:
        raise ValueError(f"a batch header starts with {_BATCH_TAG!r}, not {tag!r}")
    return sequence, messages


def encode_ack(sequence: int, delivered: int) -> bytes:
    return ACK.pack(_ACK_TAG, sequence, delivered)


def decode_ack(data: Buffer) -> Tuple[int, int]:
    """``(sequence, delivered)`` of an acknowledgement; ValueError when ``data`` is not one."""
    if len(data) != ACK.size:
        raise ValueError(f"an acknowledgement has {ACK.size} bytes, not {len(data)}")
    tag, sequence, delivered = ACK.unpack(data)
    if tag != _ACK_TAG:
        raise ValueError(f"an acknowledgement starts with {_ACK_TAG!r}, not {tag!r}")
    return sequence, delivered


def _too_large(length: int, max_frame_size: int) -> FrameTooLarge:
    return FrameTooLarge(
        f"a message of {length} bytes (pickled) is over the frame size limit of {max_frame_size} bytes: "
        "it was not sent. Raise the limit on both sides with LUTE_IPC_MAX_FRAME_SIZE (e.g. 1G), or send "
        "less at once", length=length, limit=max_frame_size)


def _frame_end(data: memoryview, start: int) -> Tuple[int, int]:
    """``(end, payload length)`` of the frame starting at ``start`` of ``data`` (whole frames)."""
    head = bytes(data[start:start + 6])
    if head not in _HEADS:
        raise ValueError(f"no frame head at offset {start} of a send buffer")
    window = bytes(data[start + 6:start + 6 + _MAX_DIGITS + 3])
    digits_end = window.find(_SEP)
    if digits_end <= 0:
        raise ValueError(f"no frame length at offset {start} of a send buffer")
    length = int(window[:digits_end])
    end = start + 6 + digits_end + 3 + length + _TRAILER_SIZE + (_TAG_SIZE if head == _HEADS[1] else 0)
    return end, length


def split_batch(pieces: Sequence[Any], messages: int, limit: int,
                max_frame_size: int) -> List[Tuple[List[Any], int]]:
    """Cut what a writer hands to a link into ZeroMQ messages of at most ``limit`` bytes.

    ``pieces`` concatenated are whole frames (a send buffer, or one frame sent scatter-gather);
    ``messages`` is how many. Returns ``[(pieces, messages), ...]``: ``[(pieces, messages)]``
    itself when it fits (the common case: nothing is parsed), else consecutive runs of frames.
    Raises FrameTooLarge, before anything is sent, when a frame's payload is over
    ``max_frame_size`` or a frame alone is over ``limit``.
    """
    total = 0
    for piece in pieces:
        total += memoryview(piece).nbytes
    if total <= limit:
        return [(list(pieces), messages)]
    if len(pieces) == 1:
        data = memoryview(pieces[0]).cast("B")
    else:
        if messages == 1:  # one frame: its head says how large its payload is
            _, length = _frame_end(memoryview(pieces[0]).cast("B"), 0)
            raise _too_large(length, max_frame_size)
        data = memoryview(b"".join(pieces))
    out: List[Tuple[List[Any], int]] = []
    run_start = pos = 0
    count = 0
    while pos < total:
        end, length = _frame_end(data, pos)
        if length > max_frame_size or end - pos > limit:
            raise _too_large(length, max_frame_size)
        if end - run_start > limit:
            out.append(([data[run_start:pos]], count))
            run_start, count = pos, 0
        count += 1
        pos = end
    out.append(([data[run_start:pos]], count))
    return out


def parts_of(pieces: Sequence[Any], part_size: int = PART_SIZE) -> List[Any]:
    """The ZeroMQ parts of one session batch: ``pieces`` cut into ``part_size`` slices."""
    data = memoryview(pieces[0]).cast("B") if len(pieces) == 1 else memoryview(b"".join(pieces))
    size = data.nbytes
    if size <= part_size:
        return [data]
    return [data[i:i + part_size] for i in range(0, size, part_size)]


class CurveKeys(NamedTuple):
    """Z85-encoded CURVE key pairs of a run (40 ASCII bytes each)."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes


def curve_keys(key: bytes) -> CurveKeys:
    """The run's CURVE key pairs, derived from ``LUTE_IPC_KEY`` with HMAC-SHA256 (one label per
    pair): every holder of the key derives the same pairs, nobody else can."""
    import zmq
    from zmq.utils import z85

    def pair(label: bytes) -> Tuple[bytes, bytes]:
        secret = z85.encode(hmac.digest(key, b"lute_ipc zeromq curve " + label, "sha256"))
        return zmq.curve_public(secret), secret

    server_public, server_secret = pair(b"server")
    client_public, client_secret = pair(b"client")
    return CurveKeys(server_public, server_secret, client_public, client_secret)
