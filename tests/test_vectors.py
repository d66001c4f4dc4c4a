"""Byte-exact test vectors of docs/PROTOCOL.md (tests/vectors/frames.json), on both twins."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List

import pytest

VECTORS = json.loads((Path(__file__).parent / "vectors" / "frames.json").read_text())


def _options(raw: Dict[str, Any]) -> Dict[str, Any]:
    options = dict(raw)
    if "key" in options:
        options["key"] = bytes.fromhex(options["key"])
    return options


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda c: c["frame_hex"][:24])
def test_encode_vectors(impl: ModuleType, case: Dict[str, Any]) -> None:
    key = bytes.fromhex(case["key_hex"]) if "key_hex" in case else None
    assert impl.encode_payload(bytes.fromhex(case["payload_hex"]), key=key).hex() == case["frame_hex"]


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["name"])
def test_decode_vectors_received_into_the_pending_buffer(impl: ModuleType, case: Dict[str, Any]) -> None:
    """The same results when, once a frame's head is known, its bytes are written into
    ``pending_buffer()`` (one at a time: every boundary) and committed."""
    found: List[Any] = []
    decoder = impl.FrameDecoder(loads=None, on_error=found.append, **_options(case["options"]))
    stream = bytes.fromhex(case["stream_hex"])
    out: List[bytes] = []
    for i in range(len(stream)):
        view = decoder.pending_buffer()
        if view is None:
            out += decoder.feed(stream[i:i + 1])
        else:
            view[0] = stream[i]
            del view
            out += decoder.commit(1)
    decoder.feed_eof()
    assert [p.hex() for p in out] == case["payloads_hex"]
    assert [[type(e).__name__, e.offset] for e in found] == case["errors"]
    assert decoder.skipped_bytes == case["skipped_bytes"]


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["name"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_decode_vectors(impl: ModuleType, case: Dict[str, Any], bytewise: bool) -> None:
    found: List[Any] = []
    decoder = impl.FrameDecoder(loads=None, on_error=found.append, **_options(case["options"]))
    stream = bytes.fromhex(case["stream_hex"])
    out: List[bytes] = []
    pieces = [stream[i:i + 1] for i in range(len(stream))] if bytewise else [stream]
    for piece in pieces:
        out += decoder.feed(piece)
    decoder.feed_eof()
    assert [p.hex() for p in out] == case["payloads_hex"]
    assert [[type(e).__name__, e.offset] for e in found] == case["errors"]
    assert decoder.skipped_bytes == case["skipped_bytes"]
