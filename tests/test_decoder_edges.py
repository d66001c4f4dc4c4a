"""Edges of the frame decoder and codec that a mutation run found untested (issue 17, item 7).

Each test names the mutant it kills; all run on both twins.
"""

from __future__ import annotations

import pickle
import sys
from types import ModuleType
from typing import Any, List

import pytest

from lute_ipc import _framing_py, codec, errors
from lute_ipc.message import Message

KEY = bytes(range(32))
FRAME = _framing_py.encode_frame(Message("ok", "TASK_LOG"))


def decoder_with_errors(impl: ModuleType, **options: Any) -> Any:
    found: List[Exception] = []
    decoder = impl.FrameDecoder(on_error=found.append, **options)
    return decoder, found


def test_feed_eof_resets_the_skipping_state(impl: ModuleType) -> None:
    """Mutant: feed_eof() leaves the decoder resynchronising, so the next stream's garbage goes unreported."""
    decoder, found = decoder_with_errors(impl)
    decoder.feed(b"garbage")
    decoder.feed_eof()
    assert decoder.errors == 1
    assert decoder.feed(b"more garbage" + FRAME) == [Message("ok", "TASK_LOG")]
    assert decoder.errors == 2 and isinstance(found[1], errors.BadHeader) and found[1].offset == 7


@pytest.mark.parametrize("tail", [b"M", b"MS", b"MSG;;", b"MSG;;;", b"MSG;;;12", b"MSG;;;12;", b"MSG;;;12;;",
                                  b"MSG;;;3;;;ab", b"MAC;;;1;;;x"])
def test_nothing_stays_buffered_after_eof(impl: ModuleType, tail: bytes) -> None:
    """Mutant: a partial head inside a truncated frame is kept buffered at EOF."""
    decoder, found = decoder_with_errors(impl, key=KEY)
    decoder.feed(b"MSG;;;99;;;xy" + tail)
    assert decoder.buffered == len(b"MSG;;;99;;;xy" + tail)
    assert decoder.feed_eof() == []
    assert decoder.buffered == 0
    assert [type(e) for e in found] == [errors.TruncatedFrame]
    assert decoder.skipped_bytes == len(b"MSG;;;99;;;xy" + tail)
    assert decoder.feed(FRAME) == [Message("ok", "TASK_LOG")]  # a fresh stream starts clean


@pytest.mark.parametrize("tail", [b"M", b"MSG;;;", b"MSG;;;5", b"MSG;;;5;;"])
def test_a_lone_partial_head_at_eof_is_truncated(impl: ModuleType, tail: bytes) -> None:
    decoder, found = decoder_with_errors(impl)
    decoder.feed(FRAME + tail)
    assert decoder.buffered == len(tail)
    assert decoder.feed_eof() == []
    assert decoder.buffered == 0 and [type(e) for e in found] == [errors.TruncatedFrame]
    assert found[0].pending == tail and found[0].offset == len(FRAME)


@pytest.mark.parametrize("tail", [b"M", b"MS", b"MSG;;", b"MA", b"MAC;;"])
def test_a_partial_head_held_back_while_skipping_is_not_a_second_error_at_eof(impl: ModuleType, tail: bytes) -> None:
    """Red team 19: a frame over the limit is skipped (one FrameTooLarge); its trailer's last byte
    ``M`` (or garbage ending like a head) is held back in case a frame starts there. At EOF those
    bytes are the end of what was already reported, not a truncated frame: one message over the
    limit is counted once."""
    decoder, found = decoder_with_errors(impl, max_frame_size=len(FRAME))
    over = b"MSG;;;%d;;;" % (len(FRAME) + 1) + b"x" * (len(FRAME) + 1) + b";;;GSM"
    assert decoder.feed(over[:-1] if tail == b"M" else over + b"garbage" + tail) == []
    if tail == b"M":
        assert decoder.feed(b"M") == []
    assert decoder.buffered == len(tail)
    assert decoder.feed_eof() == []
    assert decoder.buffered == 0
    assert [type(e) for e in found] == [errors.FrameTooLarge]
    sent = len(over) + (0 if tail == b"M" else len(b"garbage" + tail))
    assert decoder.skipped_bytes == sent  # every byte accounted as skipped, none lost from the count
    assert decoder.feed(FRAME) == [Message("ok", "TASK_LOG")]


def test_zero_padded_twenty_digit_length_above_the_limit_is_too_large(impl: ModuleType) -> None:
    """Mutant: the digit-count check runs first and reports BadHeader."""
    decoder, found = decoder_with_errors(impl, max_frame_size=50)
    decoder.feed(b"MSG;;;" + b"0" * 18 + b"99;;;" + b"x" * 99 + b";;;GSM" + FRAME)
    assert isinstance(found[0], errors.FrameTooLarge) and found[0].length == 99 and found[0].limit == 50
    decoder, found = decoder_with_errors(impl, max_frame_size=50)
    decoder.feed(b"MSG;;;" + b"0" * 19 + b"1;;;x;;;GSM")
    assert type(found[0]) is errors.BadHeader  # 20 digits within the limit: a bad length field
    out = impl.FrameDecoder(loads=None).feed(b"MSG;;;" + b"0" * 18 + b"1;;;x;;;GSM")
    assert out == [b"x"]  # 19 digits are allowed, zero-padded or not


@pytest.mark.parametrize("head", [b"MSG;;;12x", b"MSG;;;12;x", b"MSG;;;12;;x", b"MSG;;;x", b"MSG;;;12;;X"])
def test_a_bad_byte_after_the_digits_is_rejected_at_once_even_at_a_chunk_end(impl: ModuleType, head: bytes) -> None:
    """Mutants: 'MSG;;;12x' buffered instead of rejected; a two-byte separator check accepting ';;X'."""
    decoder, found = decoder_with_errors(impl)
    assert decoder.feed(head) == []
    assert [type(e) for e in found] == [errors.BadHeader] and found[0].offset == 0
    assert decoder.buffered < len(head)
    assert decoder.feed(FRAME) == [Message("ok", "TASK_LOG")]


def test_separator_must_be_three_semicolons(impl: ModuleType) -> None:
    decoder, found = decoder_with_errors(impl, loads=None)
    assert decoder.feed(b"MSG;;;1;;Xx;;;GSM") == []
    assert decoder.feed(b"MSG;;;1;X;x;;;GSM") == []
    assert decoder.feed(b"MSG;;;1;;;x;;;GSM") == [b"x"]
    assert [type(e) for e in found] == [errors.BadHeader, errors.BadHeader]


class _CountingDecoder(_framing_py.FrameDecoder):
    """The pure twin, counting the bytes its scanner is handed."""

    scanned = 0

    def _scan(self, data: Any, pos: int, end: int, offset: int, out: List[Any]) -> None:
        self.scanned += end - pos
        super()._scan(data, pos, end, offset, out)


def test_feeding_a_large_frame_in_small_pieces_is_linear() -> None:
    """Mutant: feed() rescans the buffered frame on every piece (quadratic in the frame size)."""
    payload = pickle.dumps(b"z" * 400_000)
    stream = _framing_py.encode_payload(payload) * 2
    decoder = _CountingDecoder(loads=None)
    out = []
    for start in range(0, len(stream), 100):
        out += decoder.feed(stream[start:start + 100])
    assert out == [payload, payload]
    assert decoder.scanned <= 2 * len(stream)  # each byte scanned about once, not once per piece


def test_frames_are_counted_without_loads(impl: ModuleType) -> None:
    """Mutant: ``frames`` not counted when loads=None."""
    decoder = impl.FrameDecoder(loads=None)
    payload = FRAME[FRAME.index(b";;;", 6) + 3:-len(b";;;GSM")]
    assert decoder.feed(FRAME * 3) == [payload] * 3
    assert decoder.frames == 3 and decoder.errors == 0


def test_bad_tag_and_missing_key_are_told_apart(impl: ModuleType) -> None:
    """Mutant: a bad tag reported with the no-key message (or the other way round)."""
    signed = impl.encode_frame(Message("s"), key=KEY)
    tampered = signed[:-7] + bytes([signed[-7] ^ 1]) + signed[-6:]
    decoder, found = decoder_with_errors(impl, key=KEY)
    decoder.feed(tampered)
    assert str(found[0]) == "frame at stream offset 0 has a bad authentication tag"
    decoder, found = decoder_with_errors(impl)
    decoder.feed(signed)
    assert str(found[0]) == "authenticated frame at stream offset 0 but no key is configured"
    assert all(isinstance(e, errors.AuthenticationError) for e in found)


@pytest.mark.parametrize("size, ok", [(15, False), (16, True), (17, True)])
def test_key_size_boundary(size: int, ok: bool) -> None:
    """Mutant: the 16-byte minimum key size moved by one."""
    text = bytes(range(size)).hex()
    if ok:
        assert codec.parse_key(text) == bytes(range(size))
    else:
        with pytest.raises(errors.ConfigurationError, match="at least 16 bytes"):
            codec.parse_key(text)


def test_parse_key_ignores_surrounding_whitespace_only() -> None:
    """Mutant: parse_key without strip()."""
    key = bytes(range(32))
    assert codec.parse_key(f"  {key.hex()}\n") == key
    assert codec.parse_key(f"\t{key.hex().upper()} ") == key
    with pytest.raises(errors.ConfigurationError, match="hexadecimal"):
        codec.parse_key(key.hex()[:10] + "zz" + key.hex()[12:])


def test_protocol_2_pickles_map_python_2_names_in_the_restricted_unpickler() -> None:
    """Mutant: Python 2 names (``__builtin__.set``) not mapped for protocol < 3 pickles."""
    legacy = b"\x80\x02c__builtin__\nset\n]K\x01a\x85R."
    assert codec.restricted_loads(legacy) == {1}
    assert pickle.loads(legacy) == {1}
    with pytest.raises(errors.ForbiddenClass):  # protocol 3+: pickle does not map names either
        codec.restricted_loads(b"\x80\x03c__builtin__\nset\n]K\x01a\x85R.")


def test_the_default_frame_bound_is_64_mib(impl: ModuleType) -> None:
    """Mutants: DEFAULT_MAX_FRAME_SIZE changed (docs/PROTOCOL.md states 64 MiB)."""
    assert impl.DEFAULT_MAX_FRAME_SIZE == 64 * 1024 * 1024 == impl.FrameDecoder().max_frame_size
    decoder, found = decoder_with_errors(impl)
    decoder.feed(b"MSG;;;%d;;;" % (64 * 1024 * 1024 + 1))
    assert isinstance(found[0], errors.FrameTooLarge) and decoder.buffered == 0
    decoder, found = decoder_with_errors(impl)
    decoder.feed(b"MSG;;;%d;;;" % (64 * 1024 * 1024))
    assert found == [] and decoder.buffered > 0


@pytest.mark.parametrize("length", [b"1:", b"/1", b"1 ", b"\xb9"])
def test_only_ascii_digits_make_a_length(impl: ModuleType, length: bytes) -> None:
    """Mutant: the digit range widened by one (':' or '/' taken for a digit)."""
    decoder, found = decoder_with_errors(impl, loads=None)
    assert decoder.feed(b"MSG;;;" + length + b";;;xx;;;GSM" + FRAME[:0]) == []
    assert [type(e) for e in found] == [errors.BadHeader]


def test_usage_errors_say_what_is_wrong(impl: ModuleType) -> None:
    """Mutants: the messages of the encoders' usage errors."""
    with pytest.raises(errors.UsageError, match="^key must be non-empty bytes \\(or None\\)$"):
        impl.encode_payload(b"x", key=b"")
    with pytest.raises(errors.UsageError, match="^buffer must be a bytearray$"):
        impl.append_payload(b"immutable", b"x")  # type: ignore[arg-type]
    buffer = bytearray(b"abc")
    with pytest.raises(errors.UsageError, match="^payload must not be the buffer itself$"):
        impl.append_payload(buffer, buffer)


def test_append_payload_counts_bytes_of_any_buffer_format(impl: ModuleType) -> None:
    """Mutant: a multi-byte-item memoryview appended without casting to bytes (its length is in items)."""
    import array

    items = array.array("i", [1, 2, 3])
    for payload in (items, memoryview(items), memoryview(b"abcdef").cast("c")):
        buffer = bytearray()
        added = impl.append_payload(buffer, payload)
        assert bytes(buffer) == impl.encode_payload(memoryview(payload).tobytes()) and added == len(buffer)


@pytest.mark.parametrize("options, message", [
    ({"max_frame_size": -1}, "max_frame_size must be a non-negative int$"),
    ({"max_frame_size": True}, "max_frame_size must be a non-negative int$"),
    ({"max_frame_size": 1.5}, "max_frame_size must be a non-negative int$"),
    ({"max_frame_size": 10 ** 19}, f"max_frame_size must be below {min(10 ** 19, sys.maxsize + 1)}"),
    ({"max_frame_size": sys.maxsize + 1}, "max_frame_size must be below"),
    ({"loads": 3}, "loads must be callable or None$"),
    ({"on_error": "x"}, "on_error must be callable or None$"),
])
def test_decoder_options_are_checked_with_clear_messages(impl: ModuleType, options: dict, message: str) -> None:
    """Mutants: the option checks' messages and bounds."""
    with pytest.raises(errors.UsageError, match=f"^{message}"):
        impl.FrameDecoder(**options)


def test_the_smallest_frame_bound_is_zero(impl: ModuleType) -> None:
    """Mutant: max_frame_size=0 refused (only empty payloads fit); the largest bound refused."""
    decoder = impl.FrameDecoder(max_frame_size=0, loads=None)
    assert decoder.feed(b"MSG;;;0;;;;;;GSM") == [b""]
    largest = min(10 ** 19, sys.maxsize + 1) - 1  # the Cython twin holds sizes in a C ssize_t
    assert impl.FrameDecoder(max_frame_size=largest).max_frame_size == largest


def test_every_error_says_what_and_where(impl: ModuleType) -> None:
    """Mutants: the texts of the shared error factories (both twins report the same text)."""
    def first_error(stream: bytes, eof: bool = False, **options: Any) -> str:
        decoder, found = decoder_with_errors(impl, **options)
        decoder.feed(stream)
        if eof:
            decoder.feed_eof()
        return str(found[0])

    assert first_error(b"xx" + FRAME) == "no frame head at stream offset 0 (byte 0x78)"
    assert first_error(b"MSG;;;1x;;;") == "bad length field in frame at stream offset 0"
    assert first_error(b"MSG;;;99;;;", max_frame_size=5) == \
        "frame at stream offset 0 announces more than max_frame_size=5 bytes"
    assert first_error(b"MSG;;;1;;;x;;;GSX") == \
        "frame at stream offset 0 does not end with b';;;GSM' after 1 payload bytes"
    signed = impl.encode_payload(b"x", key=KEY)
    assert first_error(signed[:-1] + b"X", key=KEY) == \
        "frame at stream offset 0 does not end with b';;;CAM' after 1 payload bytes"
    assert first_error(FRAME, require_auth=True, key=KEY) == \
        "unauthenticated frame at stream offset 0 where authentication is required"
    assert first_error(b"MSG;;;5;;;", eof=True) == "stream ended inside a frame (10 bytes buffered)"
    assert first_error(b"MSG;;;1;;;x;;;GSM").startswith(
        "payload of frame at stream offset 0 could not be decoded: UnpicklingError: ")


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_protocol_0_lines_that_start_with_their_newline(kind: type) -> None:
    """Mutant: the zero-copy reader taking a newline at the first position for no newline."""
    value = ["", "x", "", b""]
    data = pickle.dumps(value, 0)
    assert codec.loads(kind(data)) == value
    big = ["" for _ in range(3)] + ["y" * 40_000]  # lent as a view above the lending threshold
    assert codec.loads(kind(pickle.dumps(big, 0))) == big


@pytest.mark.parametrize("tail", [b"x", b"xy", b"MX", b"MSX", b"MAC;X"])
def test_a_short_tail_that_cannot_start_a_head_is_rejected_at_once(impl: ModuleType, tail: bytes) -> None:
    """Mutant: any tail shorter than a head buffered, bad or not (its error then comes late)."""
    decoder, found = decoder_with_errors(impl)
    assert decoder.feed(FRAME + tail) == [Message("ok", "TASK_LOG")]
    assert [type(e) for e in found] == [errors.BadHeader] and found[0].offset == len(FRAME)
    assert decoder.buffered < len(tail) or tail[-1:] == b"M"


def test_loads_reads_buffers_of_any_item_format() -> None:
    """Mutant: the zero-copy reader's cast of non-byte views."""
    import array

    value = {"a": [1, 2.5, "x" * 50]}
    data = pickle.dumps(value, 4)
    assert codec.loads(memoryview(data).cast("c")) == value
    padded = data + b"\0" * (-len(data) % 4)
    assert codec.loads(memoryview(array.array("i", padded))) == value  # trailing bytes after STOP are ignored


def test_generated_keys_are_32_random_bytes() -> None:
    """Mutant: KEY_SIZE (docs/SECURITY.md: 32 random bytes per run)."""
    assert codec.KEY_SIZE == 32 and len(codec.generate_key()) == 32
    assert codec.TAG_SIZE == 32


@pytest.mark.parametrize("head", [b"MSG;;;12x", b"MSG;;;12;x", b"MSG;;;12;;x", b"MSG;;;x", b"MSG;;;" + b"0" * 21])
def test_bad_length_fields_are_reported_where_their_frame_starts(impl: ModuleType, head: bytes) -> None:
    """Mutant: the offset of a bad length computed wrongly after earlier frames."""
    decoder, found = decoder_with_errors(impl)
    decoder.feed(FRAME + b"junk" + FRAME + head)
    assert [(type(e), e.offset) for e in found] == [(errors.BadHeader, len(FRAME)),
                                                    (errors.BadHeader, 2 * len(FRAME) + 4)]


def test_feed_of_a_non_buffer_names_the_type(impl: ModuleType) -> None:
    """Mutant: the text of feed()'s usage error."""
    with pytest.raises(errors.UsageError, match="^feed\\(\\) needs a bytes-like object, not str$"):
        impl.FrameDecoder().feed("text")  # type: ignore[arg-type]


def test_a_partial_head_after_a_salvaged_frame_at_eof_is_dropped_with_its_region(impl: ModuleType) -> None:
    """Mutant: the EOF scan mishandling a partial head met outside a resynchronisation."""
    decoder, found = decoder_with_errors(impl)
    stream = b"MSG;;;9999;;;" + FRAME + b"MS"
    decoder.feed(stream)
    assert decoder.feed_eof() == [Message("ok", "TASK_LOG")]
    assert [type(e) for e in found] == [errors.TruncatedFrame] and decoder.buffered == 0
    assert decoder.skipped_bytes == len(stream) - len(FRAME)
