"""Red team: a FRAME opcode announcing 1 TiB hides the well-formed pickle that follows it.

docs/PROTOCOL.md section 4: a pickle longer than ``max_pickle_size`` is reported as
``PickleTooLarge`` "as soon as an announced length shows it", and "every well-formed pickle
written after bad octets ... is delivered, in order, on both cores". The eleven octets
``\\x80\\x02\\x8e`` + a 1 TiB BINBYTES8 length behave so. The same eleven octets with the FRAME
opcode instead (``\\x80\\x04\\x95`` + a 1 TiB frame length) do not: the splitter reads on through
the next, well-formed pickle up to its STOP, ``loads`` fails on the combined bytes, and the
following pickle is reported as part of one ``PayloadError`` and never delivered.
"""

from __future__ import annotations

import pickle
import struct
from types import ModuleType

import pytest

from lute_ipc.stream_items import Pickled, StreamError, Text, coalesce

TIB = 1 << 40


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("chunk", [None, 1])
def test_pickle_after_lying_frame_length_is_delivered(impl: ModuleType, protocol: int, chunk: object) -> None:
    after = pickle.dumps({"after": "the lie"}, protocol=protocol)
    data = b"\x80\x04\x95" + struct.pack("<Q", TIB) + after + b"tail\n"
    splitter = impl.MixedStreamSplitter()
    size = len(data) if chunk is None else 1
    items = []
    for start in range(0, len(data), size):
        items += splitter.feed(data[start:start + size])
    items += splitter.flush()
    items = coalesce(items)
    values = [item.value for item in items if isinstance(item, Pickled)]
    assert values == [{"after": "the lie"}], items
    assert isinstance(items[-1], Text) and items[-1].text.endswith("tail\n")
    assert any(isinstance(item, StreamError) for item in items)
