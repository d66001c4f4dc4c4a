"""Property and differential tests of the frame codec (hypothesis).

* Cython == reference: same input, same chunking -> identical messages, errors (type,
  offset, text), counters.
* Any chunking of any frame sequence yields exactly the messages, and the same errors.
* Adversarial payloads and garbage between frames: every valid frame after garbage that
  cannot be mistaken for a frame start is delivered.
* Mixed pairs: frames encoded by one twin decode with the other.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lute_ipc import _framing_py
from lute_ipc.message import Message

from .conftest import IMPLEMENTATIONS

KEY = b"k" * 32
TWINS = {name: module for name, module in IMPLEMENTATIONS.items() if module is not None}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MARKERS = [b";;;", b";;;GSM", b"MSG;;;", b"MAC;;;", b";;;CAM", b"\x80\x04", b"MSG;;;12;;;", b"M", b"MS"]
nasty_bytes = st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(MARKERS)), max_size=6).map(b"".join)
# objects: contents the Cython envelope writes around their own pickle (any type of plain data)
objects = st.recursive(st.one_of(st.integers(), st.text(max_size=8), nasty_bytes, st.floats(allow_nan=False)),
                       lambda inner: st.one_of(st.lists(inner, max_size=4),
                                               st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                       max_leaves=12)
contents = st.one_of(st.none(), st.integers(), st.text(max_size=30), nasty_bytes,
                     nasty_bytes.map(lambda b: b.decode("latin-1")), objects)
signals = st.one_of(st.none(), st.sampled_from(["TASK_LOG", "TASK_RESULT", "TASK_DONE"]))
messages = st.builds(Message, contents, signals)


@st.composite
def chunked(draw: Any, data: bytes) -> List[bytes]:
    """Split ``data`` at random cut points."""
    if not data:
        return [data]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    bounds = [0] + cuts + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def run(impl: ModuleType, pieces: List[bytes], **options: Any) -> Tuple[List[Any], List[Tuple[str, Any, str]], Tuple[int, ...]]:
    found: List[Tuple[str, Any, str]] = []
    decoder = impl.FrameDecoder(on_error=lambda e: found.append((type(e).__name__, e.offset, str(e))), **options)
    out: List[Any] = []
    for piece in pieces:
        out += decoder.feed(piece)
    out += decoder.feed_eof()
    return out, found, (decoder.errors, decoder.frames, decoder.skipped_bytes, decoder.bytes_fed, decoder.buffered)


# a stream element: a plain frame, a signed frame, garbage, a broken frame
element = st.one_of(
    messages.map(lambda m: ("plain", m)),
    messages.map(lambda m: ("signed", m)),
    st.binary(max_size=30).map(lambda b: ("garbage", b)),
    st.sampled_from(MARKERS).map(lambda b: ("garbage", b)),
    st.tuples(messages, st.integers(1, 40)).map(lambda t: ("cut", t)),
    st.binary(max_size=20).map(lambda b: ("unpicklable", b)),
)


def build(elements: List[Tuple[str, Any]]) -> bytes:
    enc = _framing_py.encode_frame
    parts = []
    for kind, value in elements:
        if kind == "plain":
            parts.append(enc(value))
        elif kind == "signed":
            parts.append(enc(value, key=KEY))
        elif kind == "garbage":
            parts.append(value)
        elif kind == "cut":
            frame = enc(value[0])
            parts.append(frame[:max(0, len(frame) - value[1])])
        else:
            parts.append(_framing_py.encode_payload(b"\x00" + value))
    return b"".join(parts)


@SETTINGS
@given(st.lists(element, max_size=12), st.data())
def test_twins_agree_on_any_stream_and_chunking(elements: List[Tuple[str, Any]], data: Any) -> None:
    stream = build(elements)
    pieces = data.draw(chunked(stream))
    results: Dict[str, Any] = {name: run(module, pieces, key=KEY) for name, module in TWINS.items()}
    reference = results.pop("py")
    for name, result in results.items():
        assert result == reference, name


@SETTINGS
@given(st.lists(element, max_size=12), st.data())
def test_chunking_never_changes_the_result(elements: List[Tuple[str, Any]], data: Any) -> None:
    stream = build(elements)
    pieces = data.draw(chunked(stream))
    for module in TWINS.values():
        whole = run(module, [stream], key=KEY)
        assert run(module, pieces, key=KEY) == whole


@SETTINGS
@given(st.lists(messages, max_size=15), st.data())
def test_any_chunking_of_frames_yields_exactly_the_messages(msgs: List[Message], data: Any) -> None:
    for module in TWINS.values():
        stream = b"".join(module.encode_frame(m) for m in msgs)
        out, found, counters = run(module, data.draw(chunked(stream)))
        assert out == msgs and found == [] and counters[0] == 0 and counters[4] == 0


@SETTINGS
@given(st.lists(st.tuples(st.binary(max_size=40), messages), max_size=8), st.data())
def test_frames_after_garbage_are_delivered(pairs: List[Tuple[bytes, Message]], data: Any) -> None:
    """Garbage that holds no frame head and cannot end one loses no later frame."""
    for module in TWINS.values():
        stream = b"".join(junk.replace(b"M", b"m") + module.encode_frame(m) for junk, m in pairs)
        out, found, _ = run(module, data.draw(chunked(stream)))
        assert out == [m for _, m in pairs]
        assert len(found) == sum(1 for junk, _ in pairs if junk)


@SETTINGS
@given(st.lists(messages, max_size=8), st.booleans())
def test_mixed_pairs_encode_with_one_decode_with_other(msgs: List[Message], signed: bool) -> None:
    key = KEY if signed else None
    for encoder in TWINS.values():
        stream = b"".join(encoder.encode_frame(m, key=key) for m in msgs)
        for decoder in TWINS.values():
            assert run(decoder, [stream], key=KEY, require_auth=signed)[0] == msgs


@SETTINGS
@given(st.binary(max_size=200), st.data())
def test_random_bytes_never_raise_and_are_accounted(blob: bytes, data: Any) -> None:
    for module in TWINS.values():
        out, found, counters = run(module, data.draw(chunked(blob)), loads=None)
        errors_count, frames, skipped, fed, buffered = counters
        assert fed == len(blob) and buffered == 0
        assert frames == len(out) and errors_count == len(found)
        # every byte is either part of a delivered/rejected frame or counted as skipped
        assert skipped <= len(blob)


def run_into(impl: ModuleType, pieces: List[bytes], into: List[bool], **options: Any) -> Tuple[Any, ...]:
    """Like :func:`run`, but piece i goes into ``pending_buffer()`` (as far as it holds) when
    ``into[i]`` and a frame is in progress; the rest of the piece is fed."""
    found: List[Tuple[str, Any, str]] = []
    decoder = impl.FrameDecoder(on_error=lambda e: found.append((type(e).__name__, e.offset, str(e))), **options)
    out: List[Any] = []
    for i, piece in enumerate(pieces):
        view = decoder.pending_buffer() if into[i % len(into)] else None
        if view is not None:
            size = min(len(view), len(piece))
            view[:size] = piece[:size]
            del view
            out += decoder.commit(size)
            piece = piece[size:]
        if piece:
            out += decoder.feed(piece)
    out += decoder.feed_eof()
    return out, found, (decoder.errors, decoder.frames, decoder.skipped_bytes, decoder.bytes_fed, decoder.buffered)


@SETTINGS
@given(st.lists(element, max_size=12), st.data(), st.lists(st.booleans(), min_size=1, max_size=8))
def test_receive_into_is_feeding(elements: List[Tuple[str, Any]], data: Any, into: List[bool]) -> None:
    """Writing into ``pending_buffer()`` and committing gives exactly what feeding gives, on both
    twins, whatever the stream (garbage, lying and cut frames) and the chunking."""
    stream = build(elements)
    pieces = data.draw(chunked(stream))
    results = {name: run_into(module, pieces, into, key=KEY) for name, module in TWINS.items()}
    reference = run(_framing_py, pieces, key=KEY)
    for name, result in results.items():
        assert result == reference, name
