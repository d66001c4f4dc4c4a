"""MixedStreamSplitter: the stdout grammar, on both twins, fed whole and one byte at a time."""

from __future__ import annotations

import inspect
import pickle
import sys
import types
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, List, Optional, Tuple

import pytest

from lute_ipc import _framing_py
from lute_ipc.errors import IncompletePickle, PayloadError, PickleTooLarge, UndecodableBytes, UsageError
from lute_ipc.message import Message
from lute_ipc.stream_items import Item, Pickled, StreamError, Text, coalesce

PROTOCOLS = (2, 3, 4, 5)


def run(impl: ModuleType, data: bytes, chunk: Optional[int] = None, **options: Any) -> Tuple[List[Item], Any]:
    """Feed ``data`` in ``chunk``-byte reads (whole when None), then flush."""
    splitter = impl.MixedStreamSplitter(**options)
    size = chunk or max(len(data), 1)
    items: List[Item] = []
    for start in range(0, len(data), size):
        items += splitter.feed(data[start:start + size])
    items += splitter.flush()
    return items, splitter


def both_ways(impl: ModuleType, data: bytes, **options: Any) -> List[Item]:
    """Items of ``data`` fed whole; asserts that byte-by-byte feeding gives the same coalesced items."""
    whole, _ = run(impl, data, **options)
    bytewise, _ = run(impl, data, 1, **options)
    assert coalesce(whole) == coalesce(bytewise)
    return coalesce(whole)


def undecodable(data: bytes) -> StreamError:
    return StreamError(UndecodableBytes("x"), data)


# --------------------------------------------------------------------------- text
@pytest.mark.parametrize("text", ["Found! \n", "F0\n", "co\nco\n", "plain line\n", "no newline", "Ѐ€ɀ\n",
                                  "mixed Ѐ text € and ɀ 😀 end", "\x00\x01\x02\x03\x04\x05.", ""])
def test_text_is_text(impl: ModuleType, text: str) -> None:
    items = both_ways(impl, text.encode())
    assert items == ([Text(text)] if text else [])


def test_text_with_byte_0x80_stays_text(impl: ModuleType) -> None:
    # "Ѐ" is D0 80 and "ɀ" C9 80: a 0x80 that continues a character, even before a protocol byte.
    data = "Ѐ\x02ɀ\x04".encode()
    assert b"\x80\x02" in data and b"\x80\x04" in data
    assert both_ways(impl, data) == [Text("Ѐ\x02ɀ\x04")]


@pytest.mark.parametrize("data", [b"a\x80\x04junk\nmore text\n", b"\x80\x02\x80\x05a", b"x\x80\x03.\n",
                                  b"\x80\x04N0a", b"\x80\x02(.", b"\x80\x04NN.", b"\x80\x06N."])
def test_0x80_that_starts_no_pickle_is_text_not_a_pickle_error(impl: ModuleType, data: bytes) -> None:
    items, splitter = run(impl, data)
    assert splitter.objects == 0
    assert not any(isinstance(i, StreamError) and not isinstance(i.error, UndecodableBytes) for i in items)
    assert b"".join(i.data if isinstance(i, StreamError) else i.text.encode() for i in items) == data
    assert both_ways(impl, data) == coalesce(items)


def test_0x80_junk_in_text(impl: ModuleType) -> None:
    items = both_ways(impl, b"a\x80\x04junk\nmore text\n")
    assert items == [Text("a"), undecodable(b"\x80"), Text("\x04junk\nmore text\n")]


def test_candidate_cut_by_end_of_stream_is_an_incomplete_pickle(impl: ModuleType) -> None:
    # At EOF a started candidate cannot be told from a pickle cut by a crash: it is reported.
    items = both_ways(impl, b"a\x80\x04junk\n")
    assert items[0] == Text("a") and isinstance(items[1].error, IncompletePickle)
    assert items[1].data == b"\x80\x04junk\n"


def test_undecodable_bytes_are_delivered_and_counted(impl: ModuleType) -> None:
    data = b"ok \xff\xfe then \xc3( and \xed\xa0\x80 end"
    items, splitter = run(impl, data)
    assert coalesce(items) == [Text("ok "), undecodable(b"\xff\xfe"), Text(" then "), undecodable(b"\xc3"),
                               Text("( and "), undecodable(b"\xed\xa0\x80"), Text(" end")]
    assert splitter.undecodable_bytes == 6
    assert splitter.errors == 3
    error = items[1]
    assert isinstance(error.error, UndecodableBytes) and error.error.offset == 3
    assert error.text == "\\xff\\xfe"
    assert both_ways(impl, data) == coalesce(items)


def test_utf8_split_across_reads_is_reassembled(impl: ModuleType) -> None:
    splitter = impl.MixedStreamSplitter()
    for char in ("Ѐ", "€", "😀"):
        raw = char.encode()
        got: List[Item] = []
        for byte in raw[:-1]:
            got += splitter.feed(bytes([byte]))
        assert got == [] and splitter.buffered == len(raw) - 1
        assert splitter.feed(raw[-1:]) == [Text(char)]
    assert splitter.flush() == []
    assert splitter.errors == 0


def test_incomplete_utf8_at_end_of_stream_is_undecodable(impl: ModuleType) -> None:
    splitter = impl.MixedStreamSplitter()
    assert splitter.feed(b"abc\xe2\x82") == [Text("abc")]
    assert splitter.flush() == [undecodable(b"\xe2\x82")]


def test_text_is_emitted_at_end_of_each_feed_and_buffer_stays_small(impl: ModuleType) -> None:
    splitter = impl.MixedStreamSplitter()
    for n in range(200):
        assert splitter.feed(b"line %d, no newline " % n) == [Text("line %d, no newline " % n)]
        assert splitter.buffered == 0
    assert splitter.feed(b"trailing \x80") == [Text("trailing ")]
    assert splitter.buffered == 1
    assert splitter.feed(b"\x41") == [undecodable(b"\x80"), Text("A")]


# --------------------------------------------------------------------------- pickles
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickled_str_is_not_text(impl: ModuleType, protocol: int) -> None:
    items = both_ways(impl, pickle.dumps("hello", protocol))
    assert items == [Pickled("hello")]
    assert items != [Text("hello")]


OBJECTS = [None, True, 0, -1, 2 ** 70, 1.5, "é€😀", b"\x80\x04\x95", bytearray(b"ab"), [], {}, (), (1,), (1, 2),
           (1, 2, 3), {"a": [1, {"b": (None, 2.5)}]}, {1, 2}, frozenset({3}), list(range(1000)),
           "x" * 70000, b"y" * 300, [[[[["deep"]]]]], Message("contents", "TASK_LOG"), Message()]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_object_of_every_protocol(impl: ModuleType, protocol: int) -> None:
    data = b"".join(pickle.dumps(obj, protocol) for obj in OBJECTS)
    assert both_ways(impl, data) == [Pickled(obj) for obj in OBJECTS]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_interleaved_text_and_pickles_in_order(impl: ModuleType, protocol: int) -> None:
    parts: List[Any] = ["start\n", {"k": 1}, "print without newline", "hello", "Ѐ after\n", None,
                        Message("m", "TASK_DONE"), "end"]
    stream = b""
    expected: List[Item] = []
    for index, part in enumerate(parts):
        if isinstance(part, str) and index % 2 == 0:
            stream += part.encode()
            expected.append(Text(part))
        else:
            stream += pickle.dumps(part, protocol)
            expected.append(Pickled(part))
    assert both_ways(impl, stream) == expected
    for chunk in (2, 3, 5, 64):
        items, splitter = run(impl, stream, chunk)
        assert coalesce(items) == expected
        assert splitter.objects == sum(isinstance(i, Pickled) for i in expected) and splitter.errors == 0


def test_pickle_split_across_reads_waits_for_its_tail(impl: ModuleType) -> None:
    data = pickle.dumps({"result": list(range(100))})
    splitter = impl.MixedStreamSplitter()
    assert splitter.feed(b"before " + data[:10]) == [Text("before ")]
    assert splitter.feed(data[10:-1]) == []
    assert splitter.buffered == len(data) - 1
    assert splitter.feed(data[-1:] + b" after") == [Pickled({"result": list(range(100))}), Text(" after")]
    assert splitter.buffered == 0


def test_large_pickle_is_unpickled_once(impl: ModuleType) -> None:
    calls = []

    def counting_loads(data: bytes) -> Any:
        calls.append(len(data))
        return pickle.loads(data)

    value = [bytes([i % 256]) * 100 for i in range(5000)]
    data = pickle.dumps(value, 4)
    items, splitter = run(impl, data, 1024, loads=counting_loads)
    assert items == [Pickled(value)]
    assert calls == [len(data)]


def test_loads_none_delivers_raw_pickle_bytes(impl: ModuleType) -> None:
    data = pickle.dumps([1, 2])
    assert both_ways(impl, b"t" + data, loads=None) == [Text("t"), Pickled(data)]


def pickled_with_lutes_message(build: Callable[[type], object]) -> bytes:
    """The pickle of ``build(Message)``, ``Message`` a stand-in at LUTE's class path
    (``lute.execution.ipc.Message``): LUTE's pickles, without importing LUTE."""
    fake = types.ModuleType("lute.execution.ipc")

    @dataclass
    class LegacyMessage:
        contents: Any = None
        signal: Optional[str] = None

    LegacyMessage.__module__ = "lute.execution.ipc"
    LegacyMessage.__qualname__ = LegacyMessage.__name__ = "Message"
    fake.Message = LegacyMessage  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("lute", "lute.execution", "lute.execution.ipc")}
    sys.modules.update({"lute": types.ModuleType("lute"), "lute.execution": types.ModuleType("lute.execution"),
                        "lute.execution.ipc": fake})
    try:
        return pickle.dumps(build(LegacyMessage))
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def test_legacy_lute_message_decodes_as_ours(impl: ModuleType) -> None:
    data = pickled_with_lutes_message(lambda legacy: legacy("done", "TASK_DONE"))
    assert b"lute.execution.ipc" in data
    assert both_ways(impl, data) == [Pickled(Message("done", "TASK_DONE"))]


# --------------------------------------------------------------------------- errors
def test_incomplete_pickle_at_end_is_reported_with_its_bytes(impl: ModuleType) -> None:
    good = pickle.dumps("first")
    partial = pickle.dumps({"never": "finished" * 10})[:-5]
    data = b"text\n" + good + partial
    for chunk in (None, 1, 7):
        items, splitter = run(impl, data, chunk)
        items = coalesce(items)
        assert items[:2] == [Text("text\n"), Pickled("first")]
        assert len(items) == 3 and isinstance(items[2].error, IncompletePickle)
        assert items[2].data == partial == items[2].error.data
        assert items[2].error.offset == 5 + len(good)
        assert splitter.errors == 1


def test_payload_error_keeps_the_bytes_and_the_stream_goes_on(impl: ModuleType) -> None:
    bad = pickle.dumps(Message("x"))
    bad = bad.replace(b"lute_ipc.message", b"no_such_module_q")
    errors: List[Exception] = []
    items = both_ways(impl, bad + b"after\n" + pickle.dumps(1), on_error=errors.append)
    assert len(items) == 3
    assert isinstance(items[0], StreamError) and isinstance(items[0].error, PayloadError)
    assert items[0].data == bad == items[0].error.payload
    assert isinstance(items[0].error.__cause__, ModuleNotFoundError)
    assert items[1:] == [Text("after\n"), Pickled(1)]
    assert len(errors) == 2 and all(isinstance(e, PayloadError) for e in errors)


def stream_bytes(items: List[Item]) -> bytes:
    """The stream bytes that text and error items stand for (pickles left out)."""
    return b"".join(i.data if isinstance(i, StreamError) else i.text.encode() for i in items
                    if not isinstance(i, Pickled))


def test_pickle_too_large_while_buffering_is_reported_then_read_as_text(impl: ModuleType) -> None:
    big = pickle.dumps(list(range(2000)), 2)  # many small opcodes, no announced length
    data = b"a" + big + b"after\n" + pickle.dumps("next")
    for chunk in (None, 100, 7):
        items, splitter = run(impl, data, chunk, max_pickle_size=1000)
        assert items[0] == Text("a")
        error = items[1]
        assert isinstance(error.error, PickleTooLarge) and error.error.offset == 1
        assert 900 < len(error.data) <= 1000 and big.startswith(error.data)  # the opcodes that fit
        # Resynchronised at the opcode that crossed the bound: nothing after it is dropped.
        assert coalesce(items)[-1] == Pickled("next")
        assert stream_bytes(items[2:]) == big[len(error.data):] + b"after\n"
        assert splitter.skipped_bytes == 0


def test_pickle_too_large_announced_length_fails_at_once_then_reads_on(impl: ModuleType) -> None:
    big = pickle.dumps(b"z" * 5000, 4)
    splitter = impl.MixedStreamSplitter(max_pickle_size=1000)
    items = splitter.feed(big[:20])
    assert isinstance(items[0].error, PickleTooLarge)
    prefix = items[0].data  # the bytes before the opcode that announces 5000 bytes
    assert len(prefix) < 20 and big.startswith(prefix)
    rest = big[20:] + b"text" + pickle.dumps(7)
    for start in range(0, len(rest), 512):
        items += splitter.feed(rest[start:start + 512])
        assert splitter.buffered <= 512
    items += splitter.flush()
    assert coalesce(items)[-1] == Pickled(7)
    assert stream_bytes(items) == big + b"text"  # every byte delivered: none skipped


def test_eleven_bytes_announcing_a_terabyte_do_not_hide_later_output(impl: ModuleType) -> None:
    """Issue 17, bug 3: BINBYTES8 announcing 1 TiB used to make the splitter skip everything after it."""
    bomb = b"\x80\x02\x8e" + (1 << 40).to_bytes(8, "little")
    later = pickle.dumps(Message("the result", "TASK_RESULT")) + b"done\n"
    for chunk in (None, 1, 5):
        items, splitter = run(impl, b"start\n" + bomb + later, chunk)
        items = coalesce(items)
        assert items[0] == Text("start\n")
        assert isinstance(items[1].error, PickleTooLarge) and items[1].data == bomb[:2]
        assert Pickled(Message("the result", "TASK_RESULT")) in items
        assert items[-1] == Text("done\n")
        assert stream_bytes(items[1:]) == bomb + b"done\n"


def test_too_large_is_decided_by_the_stream_not_the_reads(impl: ModuleType) -> None:
    # A complete pickle longer than the bound is too large even when it arrives in one read.
    data = pickle.dumps(list(range(500)), 2)
    assert len(data) > 1000
    reports = [run(impl, data + b"!", size, max_pickle_size=1000)[0] for size in (None, 1, 100)]
    assert coalesce(reports[0]) == coalesce(reports[1]) == coalesce(reports[2])
    assert isinstance(reports[0][0].error, PickleTooLarge) and coalesce(reports[0])[-1].text.endswith("!")


def test_pickle_too_large_then_end_of_stream(impl: ModuleType) -> None:
    big = pickle.dumps(b"z" * 5000, 4)
    items, splitter = run(impl, big[:3000], 100, max_pickle_size=1000)
    assert isinstance(items[0].error, PickleTooLarge)
    assert stream_bytes(items) == big[:3000]


def test_too_large_with_a_bound_smaller_than_a_proto_opcode_still_moves_on(impl: ModuleType) -> None:
    data = pickle.dumps(1) + b"x"
    items, _ = run(impl, data, None, max_pickle_size=1)
    assert isinstance(items[0].error, PickleTooLarge) and items[0].data == data[:1]
    assert stream_bytes(items) == data


def test_on_error_is_called_for_each_error(impl: ModuleType) -> None:
    seen: List[Exception] = []
    items, splitter = run(impl, b"\xff x \xfe" + pickle.dumps(1)[:-1], on_error=seen.append)
    assert [type(e) for e in seen] == [UndecodableBytes, UndecodableBytes, IncompletePickle]
    assert splitter.errors == 3
    assert [i.error for i in items if isinstance(i, StreamError)] == seen


# --------------------------------------------------------------------------- API
def test_counters(impl: ModuleType) -> None:
    data = b"t\xff" + pickle.dumps(1) + pickle.dumps(2)
    items, splitter = run(impl, data)
    assert (splitter.bytes_fed, splitter.objects, splitter.errors, splitter.undecodable_bytes) == (len(data), 2, 1, 1)


def test_feed_accepts_bytes_like_and_rejects_others(impl: ModuleType) -> None:
    splitter = impl.MixedStreamSplitter()
    assert splitter.feed(bytearray(b"ab")) == [Text("ab")]
    assert splitter.feed(memoryview(b"cd")) == [Text("cd")]
    with pytest.raises(UsageError):
        splitter.feed("text")  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"max_pickle_size": 0}, {"max_pickle_size": -1}, {"max_pickle_size": 1.5},
                                     {"max_pickle_size": True}, {"loads": 3}, {"on_error": "x"}])
def test_bad_options(impl: ModuleType, options: dict) -> None:
    with pytest.raises(UsageError):
        impl.MixedStreamSplitter(**options)


def test_options_are_keyword_only(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.MixedStreamSplitter(100)


def test_flush_resets_for_a_new_stream(impl: ModuleType) -> None:
    splitter = impl.MixedStreamSplitter()
    splitter.feed(pickle.dumps("a")[:-1])
    assert isinstance(splitter.flush()[0].error, IncompletePickle)
    assert splitter.feed(pickle.dumps("b")) == [Pickled("b")]
    assert splitter.flush() == []


def test_twins_have_the_same_signatures() -> None:
    from lute_ipc import framing

    twin = _framing_py.MixedStreamSplitter
    assert framing.MixedStreamSplitter is not None and framing.SignalTokenizer is not None
    params = inspect.signature(twin.__init__).parameters
    assert [p for p in params if p != "self"] == ["max_pickle_size", "loads", "on_error"]
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in params if p != "self")
    for name in ("MixedStreamSplitter", "SignalTokenizer"):
        assert name in _framing_py.__all__


# --------------------------------------------------------------------------- large pickles
# The Cython twin keeps a pickle larger than 1 MiB as the pieces it was fed in; the items
# must be the same as the reference's, whatever the chunking and the kind of buffer fed.
BIG = 3 * 1024 * 1024


def _chunk_sizes() -> List[int]:
    return [65536, 1000, 1 << 20, 7919]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_large_pickle_any_chunking(impl: ModuleType, protocol: int) -> None:
    value = {"blob": b"\x80\x04" * (BIG // 2), "items": [bytes([i % 256]) * 300 for i in range(3000)], "s": "é" * 1000}
    data = b"head\n" + pickle.dumps(value, protocol) + b"tail \xd0\x80" + pickle.dumps("after", protocol)
    for size in _chunk_sizes():
        items, splitter = run(impl, data, size)
        assert coalesce(items) == [Text("head\n"), Pickled(value), Text("tail Ѐ"), Pickled("after")]
        assert splitter.objects == 2 and splitter.errors == 0 and splitter.buffered == 0


def test_large_pickle_fed_as_reused_bytearray(impl: ModuleType) -> None:
    value = [bytes([i % 256]) * 1000 for i in range(3000)]
    data = pickle.dumps(value, 4)
    splitter = impl.MixedStreamSplitter()
    scratch = bytearray(65536)
    items: List[Item] = []
    for start in range(0, len(data), len(scratch)):
        piece = data[start:start + len(scratch)]
        scratch[:len(piece)] = piece
        items += splitter.feed(memoryview(scratch)[:len(piece)])
        scratch[:] = b"\xff" * len(scratch)  # the caller reuses its buffer
    assert items + splitter.flush() == [Pickled(value)]


def test_large_candidate_that_breaks_the_grammar_is_text(both_impls: dict) -> None:
    junk = b"\x80\x02B" + (2 * 1024 * 1024).to_bytes(4, "little") + b"z" * (2 * 1024 * 1024) + b"0a tail \x80"
    for size in _chunk_sizes():
        c_items, c_splitter = run(both_impls["c"], junk, size)
        py_items, py_splitter = run(both_impls["py"], junk, size)
        assert c_items == py_items
        assert c_splitter.objects == 0 and c_splitter.undecodable_bytes == py_splitter.undecodable_bytes
        assert coalesce(c_items)[0] == undecodable(b"\x80")


def test_large_pickle_errors_match_the_reference(both_impls: dict) -> None:
    big = pickle.dumps(Message("x" * BIG)).replace(b"lute_ipc.message", b"no_such_module_q")
    cut = pickle.dumps(b"y" * BIG)[:-10]
    for data, options in ((big, {}), (cut, {}), (pickle.dumps(b"w" * BIG), {"max_pickle_size": BIG // 2}),
                          (pickle.dumps([bytes([i % 256]) * 1000 for i in range(4000)], 2), {"max_pickle_size": 2 * 1024 * 1024})):
        for size in _chunk_sizes():
            c_items, c_splitter = run(both_impls["c"], data + b"end", size, **options)
            py_items, py_splitter = run(both_impls["py"], data + b"end", size, **options)
            assert c_items == py_items
            assert [type(i.error) for i in c_items if isinstance(i, StreamError)] == \
                [type(i.error) for i in py_items if isinstance(i, StreamError)]
            assert (c_splitter.errors, c_splitter.undecodable_bytes) == (py_splitter.errors,
                                                                         py_splitter.undecodable_bytes)
            assert isinstance(c_items[0], StreamError)


def test_large_pickle_with_lute_class_path_across_pieces(impl: ModuleType) -> None:
    data = pickled_with_lutes_message(lambda legacy: (b"q" * BIG, legacy("done", "TASK_DONE")))
    where = data.index(b"lute.execution.ipc")
    for cut in (where + 1, where + 9, where + 17):
        splitter = impl.MixedStreamSplitter()
        items = splitter.feed(data[:cut]) + splitter.feed(data[cut:]) + splitter.flush()
        assert items == [Pickled((b"q" * BIG, Message("done", "TASK_DONE")))]
