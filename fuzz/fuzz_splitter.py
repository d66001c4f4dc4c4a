"""Coverage-guided fuzzing of the pipe-stream splitter and the stderr tokenizer (atheris), both twins.

    python fuzz/fuzz_splitter.py -max_total_time=60 -rss_limit_mb=2048

Each input becomes a max_pickle_size, a chunking and a byte stream. Checked on every input:

* nothing escapes ``feed``/``flush``;
* the twins agree (items after :func:`lute_ipc.stream_items.coalesce`, counters), and the
  result does not depend on the chunking (compared with the stream fed whole);
* nothing is dropped: with ``loads=None`` the raw bytes of every item (pickles as bytes,
  text re-encoded, error data) concatenate back to the input (after a too-large pickle the
  splitter resynchronises instead of skipping: ``skipped_bytes`` stays 0);
* the tokenizer's signal names and text (undecodable bytes backslash-escaped, as it
  delivers them) concatenate back to its input.
"""

from __future__ import annotations

import sys
from typing import Any, List, Tuple

import atheris

with atheris.instrument_imports():
    from lute_ipc import _framing_py
    from lute_ipc.stream_items import Pickled, Signal, StreamError, Text, coalesce

try:
    from lute_ipc import _framing_c
except ImportError:
    _framing_c = None

TWINS = [m for m in (_framing_py, _framing_c) if m is not None]


def split(module: Any, pieces: List[bytes], max_pickle_size: int) -> Tuple[Any, ...]:
    splitter = module.MixedStreamSplitter(loads=None, max_pickle_size=max_pickle_size)
    items: List[Any] = []
    for piece in pieces:
        items += splitter.feed(piece)
    items += splitter.flush()
    return coalesce(items), splitter.objects, splitter.undecodable_bytes, splitter.skipped_bytes, splitter.bytes_fed


def raw_bytes(items: List[Any]) -> bytes:
    parts = []
    for item in items:
        if isinstance(item, Pickled):
            parts.append(item.value)
        elif isinstance(item, Text):
            parts.append(item.text.encode("utf-8", "surrogateescape"))
        elif isinstance(item, StreamError):
            parts.append(item.data)
        else:
            raise AssertionError(f"unexpected item {item!r}")
    return b"".join(parts)


def tokenize(module: Any, pieces: List[bytes]) -> List[Any]:
    tokenizer = module.SignalTokenizer()
    items: List[Any] = []
    for piece in pieces:
        items += tokenizer.feed(piece)
    items += tokenizer.flush()
    return coalesce(items)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    max_pickle_size = fdp.ConsumeIntInRange(16, 1 << 16)
    cuts = sorted(fdp.ConsumeIntInRange(0, 1024) for _ in range(fdp.ConsumeIntInRange(0, 8)))
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    bounds = [0] + [min(c, len(stream)) for c in cuts] + [len(stream)]
    pieces = [stream[a:b] for a, b in zip(bounds, bounds[1:])]

    reference = split(_framing_py, pieces, max_pickle_size)
    assert split(_framing_py, [stream], max_pickle_size) == reference, "chunking changed the result"
    for module in TWINS[1:]:
        assert split(module, pieces, max_pickle_size) == reference, "twins disagree"
    items, _, _, skipped, fed = reference
    assert fed == len(stream) and skipped == 0
    assert raw_bytes(items) == stream, "bytes were dropped or changed"

    tokens = tokenize(_framing_py, pieces)
    for module in TWINS[1:]:
        assert tokenize(module, pieces) == tokens, "tokenizer twins disagree"
    # stderr text is for people: undecodable bytes arrive backslash-escaped, never dropped
    rebuilt = "".join(t.name if isinstance(t, Signal) else
                      t.text if isinstance(t, (Text, StreamError)) else "?" for t in tokens)
    assert rebuilt == stream.decode("utf-8", "backslashreplace"), "tokenizer dropped or changed bytes"


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
