"""SignalTokenizer: a Task's stderr, on both twins, fed whole and one byte at a time."""

from __future__ import annotations

from types import ModuleType
from typing import Any, List, Optional

import pytest

from lute_ipc.errors import UsageError
from lute_ipc.message import LUTE_SIGNALS
from lute_ipc.stream_items import Item, Signal, Text, coalesce


def run(impl: ModuleType, data: bytes, chunk: Optional[int] = None, **options: Any) -> List[Item]:
    tokenizer = impl.SignalTokenizer(**options)
    size = chunk or max(len(data), 1)
    items: List[Item] = []
    for start in range(0, len(data), size):
        items += tokenizer.feed(data[start:start + size])
    return items + tokenizer.flush()


def both_ways(impl: ModuleType, data: bytes, **options: Any) -> List[Item]:
    whole = coalesce(run(impl, data, **options))
    assert coalesce(run(impl, data, 1, **options)) == whole
    assert coalesce(run(impl, data, 5, **options)) == whole
    return whole


def test_back_to_back_signals(impl: ModuleType) -> None:
    assert both_ways(impl, b"TASK_STARTEDTASK_LOGTASK_DONE") == [
        Signal("TASK_STARTED"), Signal("TASK_LOG"), Signal("TASK_DONE")]


@pytest.mark.parametrize("name", sorted(LUTE_SIGNALS))
def test_every_signal(impl: ModuleType, name: str) -> None:
    assert both_ways(impl, name.encode() * 3) == [Signal(name)] * 3


def test_other_text_is_kept_in_order(impl: ModuleType) -> None:
    data = "Warning: é\nTASK_LOGTraceback (most recent call last):\n  boom\nTASK_FAILED".encode()
    assert both_ways(impl, data) == [Text("Warning: é\n"), Signal("TASK_LOG"),
                                     Text("Traceback (most recent call last):\n  boom\n"), Signal("TASK_FAILED")]


def test_partial_signal_name_is_held_then_released(impl: ModuleType) -> None:
    tokenizer = impl.SignalTokenizer()
    assert tokenizer.feed(b"log\nTASK_DO") == [Text("log\n")]
    assert tokenizer.buffered == len("TASK_DO")
    assert tokenizer.feed(b"NE") == [Signal("TASK_DONE")]
    assert tokenizer.feed(b"TASK_") == []
    assert tokenizer.flush() == [Text("TASK_")]
    assert tokenizer.signals == 1


def test_a_signal_name_inside_a_line_is_text(impl: ModuleType) -> None:
    # e.g. a log line that mentions a signal, or a reply printed to stderr
    data = b"REPLY TaskResponse(response=[1]) TASK_RESPONSE\nTASK_DONE"
    assert both_ways(impl, data) == [Text("REPLY TaskResponse(response=[1]) TASK_RESPONSE\n"), Signal("TASK_DONE")]
    assert both_ways(impl, b"x TASK_DONE") == [Text("x TASK_DONE")]
    tokenizer = impl.SignalTokenizer()
    assert tokenizer.feed(b"progress 50%") == [Text("progress 50%")]
    assert tokenizer.feed(b"TASK_DONE") == [Text("TASK_DONE")]  # the line has not ended
    assert tokenizer.buffered == 0


def test_signals_start_after_line_breaks_and_signals(impl: ModuleType) -> None:
    data = b"TASK_STARTED\rTASK_LOG\n\nTASK_RESULTTASK_DONE tail"
    assert both_ways(impl, data) == [Signal("TASK_STARTED"), Text("\r"), Signal("TASK_LOG"), Text("\n\n"),
                                     Signal("TASK_RESULT"), Signal("TASK_DONE"), Text(" tail")]


def test_near_miss_is_text(impl: ModuleType) -> None:
    assert both_ways(impl, b"TASK_DON TASK_LO NO_PICKLE") == [Text("TASK_DON TASK_LO NO_PICKLE")]


def test_non_utf8_is_escaped_and_split_characters_reassembled(impl: ModuleType) -> None:
    assert both_ways(impl, b"a\xffb \xe2\x82\xac\nTASK_DONE\xc3") == [Text("a\\xffb €\n"), Signal("TASK_DONE"),
                                                                       Text("\\xc3")]


def test_buffering_is_bounded(impl: ModuleType) -> None:
    tokenizer = impl.SignalTokenizer()
    longest = max(len(name) for name in LUTE_SIGNALS)
    for _ in range(1000):
        tokenizer.feed(b"x" * 100 + b"\nTASK_RESP")
        assert tokenizer.buffered < longest
    assert tokenizer.bytes_fed == 1000 * 110


def test_custom_signals_and_validation(impl: ModuleType) -> None:
    assert both_ways(impl, b"GOx\nSTOP", signals=["GO", "STOP"]) == [Signal("GO"), Text("x\n"), Signal("STOP")]
    for bad in (["GO", "GONE"], [], ["é"], [""], "TASK_DONE"):
        with pytest.raises(UsageError):
            impl.SignalTokenizer(signals=bad)
    with pytest.raises(UsageError):
        impl.SignalTokenizer().feed("text")
