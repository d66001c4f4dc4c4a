"""FrameDecoder and encode_frame behaviour, on both twins, fed whole and one byte at a time."""

from __future__ import annotations

import pickle
import tracemalloc
from types import ModuleType
from typing import Any, List, Tuple

import pytest

from lute_ipc import errors
from lute_ipc.message import Message

KEY = bytes(range(32))


def decode(impl: ModuleType, stream: bytes, chunk: int = 0, **options: Any) -> Tuple[List[Any], List[Exception], Any]:
    """Feed ``stream`` whole (chunk=0) or in ``chunk``-byte pieces, then EOF."""
    found: List[Exception] = []
    decoder = impl.FrameDecoder(on_error=found.append, **options)
    out: List[Any] = []
    if chunk <= 0:
        out += decoder.feed(stream)
    else:
        for start in range(0, len(stream), chunk):
            out += decoder.feed(stream[start:start + chunk])
    out += decoder.feed_eof()
    return out, found, decoder


CHUNKINGS = [0, 1, 7]


# ----------------------------------------------------------------------------- encoding
def test_encode_frame_is_lute_format(impl: ModuleType) -> None:
    msg = Message(contents="hi", signal="TASK_LOG")
    payload = pickle.dumps(msg)
    assert impl.encode_frame(msg) == b"MSG;;;" + str(len(payload)).encode() + b";;;" + payload + b";;;GSM"


def test_encode_payload_accepts_any_buffer(impl: ModuleType) -> None:
    expected = b"MSG;;;3;;;abc;;;GSM"
    assert impl.encode_payload(b"abc") == expected
    assert impl.encode_payload(bytearray(b"abc")) == expected
    assert impl.encode_payload(memoryview(b"xabcx")[1:4]) == expected
    assert impl.encode_payload(b"") == b"MSG;;;0;;;;;;GSM"


def test_authenticated_frame_layout(impl: ModuleType) -> None:
    import hmac

    frame = impl.encode_payload(b"abc", key=KEY)
    signed = b"MAC;;;3;;;abc"
    assert frame == signed + hmac.digest(KEY, signed, "sha256") + b";;;CAM"


def test_encode_rejects_bad_key(impl: ModuleType) -> None:
    with pytest.raises(errors.UsageError):
        impl.encode_payload(b"abc", key=b"")
    with pytest.raises(errors.UsageError):
        impl.encode_frame(Message(), key="not bytes")


def test_encode_rejects_non_buffer(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.encode_payload("text is not bytes")


# ----------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_round_trip_many_messages(impl: ModuleType, chunk: int) -> None:
    msgs = [Message(contents=i, signal="TASK_LOG") for i in range(50)] + [Message(), Message({"a": [1, 2]}, "TASK_RESULT")]
    out, found, decoder = decode(impl, b"".join(impl.encode_frame(m) for m in msgs), chunk)
    assert out == msgs
    assert found == [] and decoder.errors == 0 and decoder.frames == len(msgs)
    assert decoder.buffered == 0


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("nasty", [b";;;", b";;;GSM", b"MSG;;;", b"MSG;;;5;;;", b"\x80\x04", b"MAC;;;", b";;;CAM", b""])
def test_adversarial_payloads(impl: ModuleType, chunk: int, nasty: bytes) -> None:
    """Payloads containing the markers decode: the parser is length-driven."""
    msgs = [Message(nasty * 3, "TASK_LOG"), Message(nasty.decode("latin-1")), Message(b"x" + nasty + b"y")]
    out, found, _ = decode(impl, b"".join(impl.encode_frame(m) for m in msgs), chunk)
    assert out == msgs and found == []


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_garbage_between_frames_is_reported_and_skipped(impl: ModuleType, chunk: int) -> None:
    good = [Message(i) for i in range(3)]
    stream = b"junk" + impl.encode_frame(good[0]) + b"\x00\xffMS" + impl.encode_frame(good[1]) + b"M" + impl.encode_frame(good[2])
    out, found, decoder = decode(impl, stream, chunk)
    assert out == good
    assert [type(e) for e in found] == [errors.BadHeader] * 3
    assert [e.offset for e in found][0] == 0
    assert decoder.skipped_bytes == 4 + 4 + 1


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize(
    "bad_length",
    [b"-5", b"+5", b" 5", b"5 ", b"", b"1" * 20, b"0x10", b"5;;", b"\xff"],
    ids=["minus", "plus", "lead-space", "trail-space", "empty", "20-digits", "hex", "short-sep", "binary"],
)
def test_bad_length_fields(impl: ModuleType, chunk: int, bad_length: bytes) -> None:
    after = Message("after")
    stream = b"MSG;;;" + bad_length + b";;;payload;;;GSM" + impl.encode_frame(after)
    out, found, _ = decode(impl, stream, chunk)
    assert out == [after]
    assert found and isinstance(found[0], errors.FramingError)
    assert found[0].offset == 0


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_oversize_length_rejected_before_buffering(impl: ModuleType, chunk: int) -> None:
    after = Message("after")
    stream = b"MSG;;;10000000000;;;" + b"x" * 100 + impl.encode_frame(after)
    out, found, decoder = decode(impl, stream, chunk, max_frame_size=1000)
    assert out == [after]
    assert isinstance(found[0], errors.FrameTooLarge) and isinstance(found[0], ValueError)
    assert found[0].limit == 1000
    assert decoder.buffered == 0


def test_max_frame_size_is_inclusive(impl: ModuleType) -> None:
    frame = impl.encode_payload(b"x" * 10)
    assert decode(impl, frame, loads=None, max_frame_size=10)[0] == [b"x" * 10]
    out, found, _ = decode(impl, frame, loads=None, max_frame_size=9)
    assert out == [] and isinstance(found[0], errors.FrameTooLarge)


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_bad_trailer_resynchronises_inside_the_bad_frame(impl: ModuleType, chunk: int) -> None:
    """A frame whose length lies still lets the frames it swallowed be found."""
    inner = impl.encode_frame(Message("inner"))
    lying = b"MSG;;;" + str(len(inner) + 4).encode() + b";;;" + inner + b"XXXXXXXXXX"
    out, found, _ = decode(impl, lying + impl.encode_frame(Message("after")), chunk)
    assert out == [Message("inner"), Message("after")]
    assert isinstance(found[0], errors.BadTrailer)


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_unpicklable_payload_is_an_error_for_that_frame_only(impl: ModuleType, chunk: int) -> None:
    stream = impl.encode_frame(Message(1)) + impl.encode_payload(b"not a pickle") + impl.encode_frame(Message(2))
    out, found, decoder = decode(impl, stream, chunk)
    assert out == [Message(1), Message(2)]
    assert len(found) == 1 and isinstance(found[0], errors.PayloadError)
    assert found[0].payload == b"not a pickle"  # nothing lost
    assert found[0].__cause__ is not None
    assert decoder.errors == 1 and decoder.frames == 2


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_truncated_frame_reported_at_eof(impl: ModuleType, chunk: int) -> None:
    frame = impl.encode_frame(Message("x" * 50))
    out, found, decoder = decode(impl, impl.encode_frame(Message(0)) + frame[:-10], chunk)
    assert out == [Message(0)]
    assert len(found) == 1 and isinstance(found[0], errors.TruncatedFrame)
    assert found[0].pending == frame[:-10]
    assert decoder.buffered == 0


def test_decoder_usable_after_eof(impl: ModuleType) -> None:
    decoder = impl.FrameDecoder()
    frame = impl.encode_frame(Message(1))
    decoder.feed(frame[:5])
    decoder.feed_eof()
    assert decoder.feed(frame) == [Message(1)]


def test_loads_none_returns_raw_payloads(impl: ModuleType) -> None:
    out, _, _ = decode(impl, impl.encode_payload(b"a;;;b") + impl.encode_payload(b""), 1, loads=None)
    assert out == [b"a;;;b", b""]
    assert all(type(x) is bytes for x in out)


def test_custom_loads(impl: ModuleType) -> None:
    out, _, _ = decode(impl, impl.encode_payload(b"abc"), 0, loads=lambda b: bytes(b).upper())
    assert out == [b"ABC"]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_feed_accepts_buffers(impl: ModuleType, kind: type) -> None:
    frame = impl.encode_frame(Message("buf"))
    decoder = impl.FrameDecoder()
    assert decoder.feed(kind(frame)) == [Message("buf")]


def test_feed_rejects_non_buffer(impl: ModuleType) -> None:
    with pytest.raises(errors.UsageError):
        impl.FrameDecoder().feed("text")


@pytest.mark.parametrize("bad", [{"max_frame_size": -1}, {"max_frame_size": 10 ** 19}, {"max_frame_size": "1"},
                                 {"loads": 3}, {"on_error": "x"}, {"key": b""}])
def test_constructor_validation(impl: ModuleType, bad: dict) -> None:
    with pytest.raises(errors.UsageError):
        impl.FrameDecoder(**bad)


def test_large_frame_in_small_chunks_is_bounded(impl: ModuleType) -> None:
    payload = b"z" * (3 * 1024 * 1024)
    frame = impl.encode_payload(payload)
    decoder = impl.FrameDecoder(loads=None, max_frame_size=len(payload))
    out: List[Any] = []
    peak = 0
    for start in range(0, len(frame), 65536):
        out += decoder.feed(frame[start:start + 65536])
        peak = max(peak, decoder.buffered)
    assert out == [payload]
    assert peak <= len(payload) + 64


def test_buffer_never_exceeds_frame_bound_with_big_feeds(impl: ModuleType) -> None:
    """A huge feed while a frame is pending does not get buffered wholesale."""
    frames = b"".join(impl.encode_payload(b"p" * 100) for _ in range(2000))
    decoder = impl.FrameDecoder(loads=None, max_frame_size=100)
    decoder.feed(frames[:50])
    assert decoder.buffered == 50
    out = decoder.feed(frames[50:] + frames[:30])
    assert len(out) == 2000 and decoder.buffered == 30


def test_memory_of_one_big_buffer_is_not_copied_wholesale(impl: ModuleType) -> None:
    stream = b"".join(impl.encode_payload(b"q" * 1000) for _ in range(5000))  # ~5 MB
    decoder = impl.FrameDecoder(loads=None)
    tracemalloc.start()
    try:
        out = decoder.feed(stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == 5000
    assert peak < 2.5 * 1000 * 5000  # the payloads themselves, not a second copy of the stream


# ----------------------------------------------------------------------------- authentication
@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_authenticated_round_trip(impl: ModuleType, chunk: int) -> None:
    msgs = [Message(i, "TASK_LOG") for i in range(5)]
    out, found, _ = decode(impl, b"".join(impl.encode_frame(m, key=KEY) for m in msgs), chunk, key=KEY, require_auth=True)
    assert out == msgs and found == []


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_bad_tag_rejected_before_unpickling(impl: ModuleType, chunk: int) -> None:
    unpickled: List[bytes] = []

    def spy(data: bytes) -> Any:
        unpickled.append(bytes(data))
        return pickle.loads(data)

    good = impl.encode_frame(Message("good"), key=KEY)
    forged = bytearray(impl.encode_frame(Message("evil"), key=KEY))
    forged[20] ^= 1  # flip a payload bit
    wrong_key = impl.encode_frame(Message("evil"), key=b"w" * 32)
    out, found, _ = decode(impl, bytes(forged) + wrong_key + good, chunk, key=KEY, loads=spy)
    assert out == [Message("good")]
    assert [type(e) for e in found] == [errors.AuthenticationError] * 2
    assert len(unpickled) == 1


def test_plain_frames_rejected_when_auth_required(impl: ModuleType) -> None:
    stream = impl.encode_frame(Message("plain")) + impl.encode_frame(Message("signed"), key=KEY)
    out, found, decoder = decode(impl, stream, 0, key=KEY, require_auth=True)
    assert out == [Message("signed")]
    assert isinstance(found[0], errors.AuthenticationError)
    assert decoder.skipped_bytes == 0  # a well-formed frame is skipped whole, not resynchronised


def test_plain_frames_accepted_when_auth_optional(impl: ModuleType) -> None:
    stream = impl.encode_frame(Message("plain")) + impl.encode_frame(Message("signed"), key=KEY)
    assert decode(impl, stream, 0, key=KEY)[0] == [Message("plain"), Message("signed")]


def test_authenticated_frame_without_key_is_rejected(impl: ModuleType) -> None:
    out, found, _ = decode(impl, impl.encode_frame(Message("signed"), key=KEY), 0)
    assert out == [] and isinstance(found[0], errors.AuthenticationError)


def test_tag_covers_the_length(impl: ModuleType) -> None:
    """Changing the length (and payload to match) invalidates the tag."""
    frame = impl.encode_payload(b"abcd", key=KEY)
    tag = frame[len(b"MAC;;;4;;;abcd"):-6]
    tampered = b"MAC;;;3;;;abc" + tag + b";;;CAM"
    out, found, _ = decode(impl, tampered, 0, key=KEY, loads=None)
    assert out == [] and isinstance(found[0], errors.AuthenticationError)


# ----------------------------------------------------------------------------- compatibility
LUTE_FRAME_MESSAGE = (
    # pickle.dumps of lute.execution.ipc.Message(contents="hello", signal="TASK_LOG"), protocol 4,
    # as written by the original SocketCommunicator (produced by the real class, recorded here).
    b"\x80\x04\x95Q\x00\x00\x00\x00\x00\x00\x00\x8c\x12lute.execution.ipc\x94\x8c\x07Message\x94\x93\x94)"
    b"\x81\x94}\x94(\x8c\x08contents\x94\x8c\x05hello\x94\x8c\x06signal\x94\x8c\x08TASK_LOG\x94ub."
)


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_original_lute_frames_decode_to_our_message(impl: ModuleType, chunk: int) -> None:
    frame = b"MSG;;;%d;;;%s;;;GSM" % (len(LUTE_FRAME_MESSAGE), LUTE_FRAME_MESSAGE)
    out, found, _ = decode(impl, frame * 3, chunk)
    assert found == []
    assert out == [Message("hello", "TASK_LOG")] * 3
    assert all(type(m) is Message for m in out)


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_frames_swallowed_by_a_lying_length_are_salvaged_at_eof(impl: ModuleType, chunk: int) -> None:
    """A length that lies (within the limit) hides later frames until EOF; EOF delivers them."""
    later = [Message("later-1"), Message("later-2")]
    lying = b"MSG;;;5000;;;" + b"".join(impl.encode_frame(m) for m in later)
    decoder = impl.FrameDecoder(on_error=(found := []).append)
    out: List[Any] = []
    pieces = [lying] if chunk == 0 else [lying[i:i + chunk] for i in range(0, len(lying), chunk)]
    for piece in pieces:
        out += decoder.feed(piece)
    assert out == []  # still waiting for 5000 bytes
    out += decoder.feed_eof()
    assert out == later
    assert [type(e) for e in found] == [errors.TruncatedFrame]
    assert found[0].pending == lying  # the whole region is reported too
    assert decoder.buffered == 0


def test_eof_salvage_is_linear(impl: ModuleType) -> None:
    """Nested lying heads at EOF do not make feed_eof quadratic (or report one error each)."""
    decoder = impl.FrameDecoder(loads=None, on_error=(found := []).append)
    decoder.feed(b"MSG;;;9999999;;;" * 20000)  # 320 KB pending, every length beyond it
    import time

    start = time.perf_counter()
    assert decoder.feed_eof() == []
    assert time.perf_counter() - start < 5  # quadratic would be ~10^4 x slower than linear
    assert len(found) == 1 and decoder.skipped_bytes == 16 * 20000


# ----------------------------------------------------------------------------- send-buffer encoding
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "signed"])
def test_append_frame_matches_encode_frame(impl: ModuleType, key: Any) -> None:
    buffer = bytearray(b"already queued")
    msgs = [Message(i, "TASK_LOG") for i in range(3)] + [Message(b";;;GSM" * 100)]
    added = [impl.append_frame(buffer, m, key=key) for m in msgs]
    expected = b"".join(impl.encode_frame(m, key=key) for m in msgs)
    assert bytes(buffer) == b"already queued" + expected
    assert sum(added) == len(expected)
    assert decode(impl, bytes(buffer[14:]), 3, key=KEY)[0] == msgs


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_append_payload_accepts_buffers(impl: ModuleType, kind: type) -> None:
    buffer = bytearray()
    assert impl.append_payload(buffer, kind(b"abc")) == len(b"MSG;;;3;;;abc;;;GSM")
    assert buffer == b"MSG;;;3;;;abc;;;GSM"


def test_append_rejects_bad_targets(impl: ModuleType) -> None:
    with pytest.raises(errors.UsageError):
        impl.append_frame(b"bytes are immutable", Message())
    buffer = bytearray(b"x")
    with pytest.raises(errors.UsageError):
        impl.append_payload(buffer, buffer)
    assert buffer == b"x"


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "signed"])
def test_frame_head_builds_scatter_gather_frames(impl: ModuleType, key: Any) -> None:
    from lute_ipc import codec

    payload = b"p" * 1000
    head = impl.frame_head(len(payload), authenticated=key is not None)
    if key is None:
        frame = head + payload + impl.PLAIN_TRAILER
    else:
        frame = head + payload + codec.frame_tag(key, head + payload) + impl.AUTH_TRAILER
    assert frame == impl.encode_payload(payload, key=key)
    with pytest.raises(errors.UsageError):
        impl.frame_head(-1)
