"""Coverage-guided fuzzing of the frame decoder (atheris / libFuzzer), both twins.

    python fuzz/fuzz_framing.py -max_total_time=60 -rss_limit_mb=2048

Each input is split by the fuzzer into decoder options, a chunking and a byte stream, which
is fed to the pure reference and the Cython twin. Checked on every input:

* nothing escapes ``feed``/``feed_eof`` (bad input is reported through ``on_error``);
* both twins return the same payloads, the same errors (type, offset, text), same counters;
* buffered bytes never exceed ``max_frame_size`` + frame overhead;
* valid frames appended after the fuzzed bytes are all delivered once the stream is
  resynchronised (the fuzzed bytes are ended by a byte no frame can start with).

Payloads are decoded with the restricted unpickler: random bytes must not run code here.
Only the pure twin is instrumented for coverage; the Cython twin is checked against it.
"""

from __future__ import annotations

import sys
from typing import Any, List, Tuple

import atheris

with atheris.instrument_imports():
    from lute_ipc import _framing_py, codec
    from lute_ipc.message import Message

try:
    from lute_ipc import _framing_c
except ImportError:
    _framing_c = None

KEY = b"f" * 32
OVERHEAD = 6 + 19 + 3 + 32 + 6
TAIL_MESSAGES = [Message("tail-1", "TASK_LOG"), Message({"n": 2}, "TASK_RESULT")]


def run(module: Any, pieces: List[bytes], options: dict) -> Tuple[Any, ...]:
    found: List[Tuple[str, Any, str]] = []
    decoder = module.FrameDecoder(on_error=lambda e: found.append((type(e).__name__, e.offset, str(e))), **options)
    out: List[Any] = []
    limit = options.get("max_frame_size", _framing_py.DEFAULT_MAX_FRAME_SIZE) + OVERHEAD
    for piece in pieces:
        out += decoder.feed(piece)
        assert decoder.buffered <= limit, (decoder.buffered, limit)
    tail = b"".join(module.encode_frame(m, key=KEY if options.get("require_auth") else None) for m in TAIL_MESSAGES)
    out += decoder.feed(b"\x00" + tail)
    out += decoder.feed_eof()
    assert out[-len(TAIL_MESSAGES):] == TAIL_MESSAGES, out[-3:]
    return out, found, decoder.errors, decoder.frames, decoder.skipped_bytes, decoder.bytes_fed


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    options = {"loads": codec.restricted_loads, "key": KEY}
    if fdp.ConsumeBool():
        options["max_frame_size"] = fdp.ConsumeIntInRange(256, 4096)
    options["require_auth"] = fdp.ConsumeBool()
    cuts = sorted(fdp.ConsumeIntInRange(0, 512) for _ in range(fdp.ConsumeIntInRange(0, 8)))
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    bounds = [0] + [min(c, len(stream)) for c in cuts] + [len(stream)]
    pieces = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    reference = run(_framing_py, pieces, options)
    if _framing_c is not None:
        assert run(_framing_c, pieces, options) == reference


def main() -> None:
    seeds = [_framing_py.encode_frame(Message("seed", "TASK_LOG")), _framing_py.encode_payload(b"x", key=KEY)]
    del seeds  # libFuzzer takes its corpus from argv; the seeds show the format for a corpus dir
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
