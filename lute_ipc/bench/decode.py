"""Scenario (a): decoding a byte stream of frames in memory, one buffer or 8 KiB chunks.

Each contender turns the same messages, framed its own way, back into objects:

* ``lute_ipc-cython`` / ``lute_ipc-pure``: ``FrameDecoder().feed`` of the two twins
  (default ``loads``: lute_ipc's pickle with LUTE class mapping), lute_ipc frames;
* ``lute``: LUTE's decoding loop (:mod:`.lute_algorithm`), LUTE frames (the same bytes);
* ``msgpack``: ``msgpack.Unpacker`` over ``[contents, signal]`` arrays (it yields tuples,
  not ``Message`` objects: no class to build);
* ``pickle-loads`` (reference): a bare ``pickle.loads`` loop over payloads already cut
  out of the stream, the floor any pickle-based decoder pays;
* ``pickle-loads-each`` (reference, ``decode-buffer`` only): the same loop dropping each result
  before the next, as an Executor's ``read()`` loop drops its messages (a list of 100,000
  results makes the garbage collector's passes slower and the loop up to 2x slower for
  objects): the floor of the objects target.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Callable, List

from ..errors import ConfigurationError, UsageError
from . import payloads
from .lute_algorithm import LuteDecoder, lute_encode

CHUNK = 8192
MODES = ("buffer", "8k")
CONTENDERS = ("lute_ipc-cython", "lute_ipc-pure", "lute", "msgpack", "pickle-loads", "pickle-loads-each")


def _pieces(stream: bytes, mode: str) -> List[Any]:
    if mode == "buffer":
        return [stream]
    view = memoryview(stream)
    return [view[start:start + CHUNK] for start in range(0, len(stream), CHUNK)]


def _twin(contender: str) -> Any:
    if contender == "lute_ipc-pure":
        from .. import _framing_py

        return _framing_py
    try:
        from .. import _framing_c
    except ImportError as exc:
        raise ConfigurationError(f"the Cython extension is not built ({exc})") from None
    return _framing_c


def decode_run(contender: str, mode: str, shape: str, count: int) -> Callable[[], int]:
    """A callable decoding ``count`` messages of ``shape``; returns how many it got."""
    if mode not in MODES:
        raise UsageError(f"decode mode must be one of {MODES}")
    if contender.startswith("lute_ipc"):
        twin = _twin(contender)
        pieces = _pieces(payloads.frame_stream(shape, count, twin.encode_frame), mode)

        def run_lute_ipc() -> int:
            decoder = twin.FrameDecoder()
            got = 0
            for piece in pieces:
                got += len(decoder.feed(piece))
            return got
        return run_lute_ipc
    if contender == "lute":
        pieces = _pieces(b"".join(lute_encode(msg) for msg in payloads.messages(shape, count)), mode)
        if mode == "8k":
            pieces = [bytes(piece) for piece in pieces]  # LUTE's reader hands it bytes

        def run_lute() -> int:
            decoder = LuteDecoder()
            got = 0
            for piece in pieces:
                got += len(decoder.feed(piece))
            return got
        return run_lute
    if contender == "msgpack":
        try:
            import msgpack
        except ImportError:
            raise ConfigurationError("msgpack is not installed (pip install 'lute-ipc[bench]')") from None
        pieces = _pieces(payloads.msgpack_stream(shape, count), mode)

        def run_msgpack() -> int:
            unpacker = msgpack.Unpacker(use_list=False, raw=False, max_buffer_size=1 << 30)
            got = 0
            for piece in pieces:
                unpacker.feed(piece)
                for _ in unpacker:
                    got += 1
            return got
        return run_msgpack
    if contender == "pickle-loads":
        cut = payloads.pickled_payloads(shape, count)
        loads = pickle.loads

        def run_loads() -> int:
            return len([loads(payload) for payload in cut])
        return run_loads
    if contender == "pickle-loads-each":
        cut = payloads.pickled_payloads(shape, count)
        loads = pickle.loads

        def run_loads_each() -> int:
            got = 0
            for payload in cut:
                loads(payload)
                got += 1
            return got
        return run_loads_each
    raise UsageError(f"no decode scenario for contender {contender!r}")


def decode_trial(run: Callable[[], int], count: int) -> float:
    """Seconds one ``run()`` takes; checks it decoded ``count`` messages."""
    start = time.perf_counter()
    got = run()
    seconds = time.perf_counter() - start
    if got != count:
        raise UsageError(f"a decoder returned {got} messages, expected {count}")
    return seconds
