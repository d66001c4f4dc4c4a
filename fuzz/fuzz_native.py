"""Coverage-guided fuzzing that reaches the C code of the Cython twin (issue 17, item 6).

    fuzz/build_native.sh                      # clang, -fsanitize=fuzzer-no-link: build/fuzz/_framing_c.so
    python fuzz/fuzz_native.py -max_total_time=60 -rss_limit_mb=2048

The extension is compiled by clang with libFuzzer's coverage instrumentation (SanitizerCoverage
counters on every edge of the generated C), and loaded here as ``lute_ipc._framing_c`` after
``atheris.Setup()`` has loaded libFuzzer with global symbols, so the extension's counters
register with it (libFuzzer prints "Loaded 1 modules (N inline 8-bit counters)").
libFuzzer is then guided by the C edges as well as by the Python ones.

Each input is decoded structurally (see :func:`test_one_input`): a frame stream, a pipe
stream, a crafted pickle (FRAME lengths, escaped module names, LUTE's class paths; over and
under 8 KiB), the Message fast path, the encoders, or a stderr stream. Checked on every input: nothing escapes the readers,
and the Cython twin gives exactly what the pure twin gives.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import pickle
import sys
from typing import Any, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.setdlopenflags(os.RTLD_NOW | os.RTLD_GLOBAL)  # libFuzzer's symbols visible to the extension

import atheris  # noqa: E402

NATIVE = os.environ.get("LUTE_IPC_FUZZ_EXTENSION", os.path.join(ROOT, "build", "fuzz", "_framing_c.so"))


def _load_instrumented() -> Any:
    loader = importlib.machinery.ExtensionFileLoader("lute_ipc._framing_c", NATIVE)
    spec = importlib.util.spec_from_file_location("lute_ipc._framing_c", NATIVE, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lute_ipc._framing_c"] = module
    loader.exec_module(module)
    return module


if not os.path.exists(NATIVE):
    sys.exit(f"{NATIVE} is missing: run fuzz/build_native.sh first")

import lute_ipc  # noqa: E402,F401  (the package, before the extension that imports from it)

_framing_c = _load_instrumented()

with atheris.instrument_imports():
    from lute_ipc import _framing_py, codec
    from lute_ipc.message import Message
    from lute_ipc.stream_items import coalesce
    from tests.crafted_pickles import BENDS, base_objects, craft, outcome

KEY = b"n" * 32


def same(a: Any, b: Any) -> bool:
    """Equal results, compared by repr (a decoded object's repr may fail: its state is then shown)."""
    return describe(a) == describe(b)


def describe(value: Any, depth: int = 0) -> str:
    if isinstance(value, (list, tuple)) and depth < 8:
        return "(" + ", ".join(describe(v, depth + 1) for v in value) + ")"
    try:
        return repr(value)
    except Exception:
        state = getattr(value, "__dict__", None)
        if isinstance(state, dict) and depth < 8:
            items = sorted(state.items(), key=lambda kv: str(kv[0]))
            shown = ", ".join(f"{k!s}={describe(v, depth + 1)}" for k, v in items)
            return f"<{type(value).__name__} {shown}>"
        return f"<{type(value).__name__}: repr failed>"


def frames(module: Any, stream: bytes, cuts: List[int], options: dict) -> Tuple[Any, ...]:
    found: List[Tuple[str, Any, str]] = []
    decoder = module.FrameDecoder(on_error=lambda e: found.append((type(e).__name__, e.offset, str(e))), **options)
    out: List[Any] = []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        out += decoder.feed(stream[a:b])
    out += decoder.feed_eof()
    return out, found, decoder.errors, decoder.frames, decoder.skipped_bytes, decoder.bytes_fed


def pipe(module: Any, stream: bytes, cuts: List[int], options: dict) -> Tuple[Any, ...]:
    splitter = module.MixedStreamSplitter(**options)
    items: List[Any] = []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        items += splitter.feed(stream[a:b])
    items += splitter.flush()
    described = [(type(i).__name__, type(getattr(i, "error", None)).__name__, i) for i in items]
    return described, splitter.objects, splitter.errors, splitter.undecodable_bytes, splitter.bytes_fed


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 5)
    if mode == 4:  # encoding: the twins write the same bytes (frames, send buffers, scatter-gather pieces)
        key = KEY if fdp.ConsumeBool() else None
        contents: Any = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)) if fdp.ConsumeBool() \
            else fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 300))
        if fdp.ConsumeIntInRange(0, 7) == 0:
            contents = contents * (70_000 // max(1, len(contents)) + 1)  # past pickle's frame target
        msg = Message(contents, fdp.ConsumeUnicode(12) or None)
        for module in (_framing_c, _framing_py):
            pieces = module.message_pieces(msg)
            if pieces is not None:
                assert b"".join(pieces[0]) == pickle.dumps(msg, codec.PICKLE_PROTOCOL)
        assert _framing_c.encode_frame(msg, key=key) == _framing_py.encode_frame(msg, key=key)
        c_buffer, py_buffer = bytearray(b"q"), bytearray(b"q")
        assert _framing_c.append_frame(c_buffer, msg, key=key) == _framing_py.append_frame(py_buffer, msg, key=key)
        assert c_buffer == py_buffer
        assert _framing_c.frame_head(len(contents), authenticated=key is not None) == \
            _framing_py.frame_head(len(contents), authenticated=key is not None)
        return
    if mode == 5:  # stderr: signal names and text
        stream = fdp.ConsumeBytes(400)
        cuts = sorted(fdp.ConsumeIntInRange(0, len(stream)) for _ in range(fdp.ConsumeIntInRange(0, 6)))
        tokens = []
        for module in (_framing_c, _framing_py):
            tokenizer = module.SignalTokenizer()
            items: List[Any] = []
            for a, b in zip([0] + cuts, cuts + [len(stream)]):
                items += tokenizer.feed(stream[a:b])
            tokens.append(items + tokenizer.flush())
        assert same(coalesce(tokens[0]), coalesce(tokens[1]))
        return
    if mode == 2:  # a crafted pickle through every reader
        obj = base_objects(fdp.ConsumeIntInRange(0, 70_000))[fdp.ConsumeIntInRange(0, 4)]
        payload = craft(obj, fdp.ConsumeIntInRange(0, 5), fdp.ConsumeIntInRange(0, len(BENDS) - 1),
                        fdp.ConsumeIntInRange(-64, 64))
        flips = fdp.ConsumeIntInRange(0, 3)
        raw = bytearray(payload)
        for _ in range(flips):
            if raw:
                raw[fdp.ConsumeIntInRange(0, len(raw) - 1)] = fdp.ConsumeIntInRange(0, 255)
        payload = bytes(raw)
        stream = _framing_py.encode_payload(payload)
        options: dict = {}
        assert same(frames(_framing_c, stream, [], options), frames(_framing_py, stream, [], options))
        assert same(pipe(_framing_c, payload, [], {}), pipe(_framing_py, payload, [], {}))
        return
    if mode == 3:  # the Message fast path against pickle
        payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
        base = pickle.dumps(Message(fdp.ConsumeUnicode(40), fdp.ConsumeUnicode(8) or None))
        at = fdp.ConsumeIntInRange(0, len(base))
        mixed = base[:at] + payload + base[at + len(payload):]
        fast = outcome(lambda: _framing_c._fast_message_loads(mixed))
        if fast[0] == "ok" and fast[1][1] is not None:
            assert fast == outcome(lambda: codec.loads(mixed)), (fast, mixed)
        return
    cuts = sorted(fdp.ConsumeIntInRange(0, 600) for _ in range(fdp.ConsumeIntInRange(0, 6)))
    stream = fdp.ConsumeBytes(600)
    cuts = [c for c in cuts if c <= len(stream)]
    if mode == 0:
        options = {"loads": codec.restricted_loads if fdp.ConsumeBool() else None, "key": KEY}
        if fdp.ConsumeBool():
            options["max_frame_size"] = fdp.ConsumeIntInRange(0, 300)
        assert same(frames(_framing_c, stream, cuts, options), frames(_framing_py, stream, cuts, options))
    else:
        options = {"loads": codec.restricted_loads, "max_pickle_size": fdp.ConsumeIntInRange(1, 700)}
        assert same(pipe(_framing_c, stream, cuts, options), pipe(_framing_py, stream, cuts, options))


# Mode 2 decodes damaged pickles on the trusting path, which is pickle: a flipped byte can make a
# LONG_BINPUT of index 1.5e9, for which the C unpickler grows its memo table to 24 GB, zeroed (the
# restricted unpickler refuses it). Both twins report such a payload's MemoryError alike once the
# address space is bounded, below libFuzzer's -rss_limit_mb (not under ASan, which reserves more).
ADDRESS_SPACE = 1536 << 20


def bound_address_space() -> None:
    import resource

    if os.environ.get("ASAN") != "1":
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    bound_address_space()
    atheris.Fuzz()
