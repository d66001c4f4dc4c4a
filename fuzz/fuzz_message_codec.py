"""Coverage-guided fuzzing of the Cython direct Message codec and envelope (atheris / libFuzzer).

    python fuzz/fuzz_message_codec.py -max_total_time=60 -rss_limit_mb=2048

The reader of ``csrc/_message_codec.pxi`` parses untrusted payload bytes in C, so it is
fuzzed on its own, starting from a corpus of valid Message pickles (written to a temporary
directory when no corpus directory is given). Checked on every input:

* reading: ``_fast_message_loads(data)`` and ``_envelope_loads(data)`` (the envelope around
  contents of plain data, ``csrc/_envelope_codec.pxi``) never raise; when one accepts the bytes,
  ``codec.loads`` (the trusting path they shortcut, here refusing every class but the mirrored
  ``Message``: random bytes must not run code) reads them as an equal ``Message`` of the same
  field types. Not the restricted unpickler: it refuses some plain data pickle reads (an empty
  ADDITEMS on bytes, over 32 colliding keys), and these fast paths serve the trusting decoder only;
* writing: a Message built from the input is written by the fast path exactly as
  ``pickle.dumps`` writes it, or left to pickle; ``message_pieces`` of both twins agree and
  join to pickle's bytes.

Needs the compiled extension (``lute_ipc._framing_c``).
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from lute_ipc import _framing_py, codec
    from lute_ipc.message import Message

from lute_ipc import _framing_c


class _MessageOnlyUnpickler(codec.CompatUnpickler):
    """``codec.loads`` for fuzz input: ``Message`` (under its own or LUTE's name), nothing else."""

    def find_class(self, module: str, name: str) -> object:
        if name != "Message" or (module != Message.__module__ and codec._mirrored_class(module, name) is None):
            raise pickle.UnpicklingError(f"fuzz reference refuses {module}.{name}")
        return super().find_class(module, name)


def trusting_loads(data: bytes) -> object:
    return _MessageOnlyUnpickler(io.BytesIO(data)).load()


SEEDS = [
    Message(),
    Message("a log line", "TASK_LOG"),
    Message("\u00e9t\u00e9 \u2603 " * 40, None),
    Message(b"raw bytes", "TASK_RESULT"),
    Message(b"y" * 300, None),
    Message(b"z" * (64 * 1024 + 3), "TASK_RESULT"),
    Message({"i": 1, "v": "x" * 40}),
    Message([{"n": 1}, {"n": 2}, (1.5, None, b"b")], "TASK_RESULT"),
]


def check_read(data: bytes) -> None:
    for reader in (_framing_c._fast_message_loads, _framing_c._envelope_loads):
        read = reader(data)
        if read is not None:
            check_same(data, read)


def check_same(data: bytes, read: object) -> None:
    expected = trusting_loads(data)
    # == alone fails on a NaN inside the contents (nan != nan): equal pickles are equal reads too
    same = read == expected or pickle.dumps(read, 4) == pickle.dumps(expected, 4)
    if type(read) is not Message or not same or \
            [type(v) for v in vars(read).values()] != [type(v) for v in vars(expected).values()]:
        raise AssertionError(f"fast path read {read!r}, pickle reads {expected!r}")


def check_write(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, 2)
    if kind == 0:
        contents = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 400))
    elif kind == 1:
        contents = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
    else:
        contents = None
    signal = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40)) if fdp.ConsumeBool() else None
    msg = Message(contents, signal)
    expected = pickle.dumps(msg, codec.PICKLE_PROTOCOL)
    written = _framing_c._fast_message_dumps(msg)
    if written is not None and written != expected:
        raise AssertionError(f"fast path wrote {written!r}, pickle writes {expected!r}")
    enveloped = Message([contents, signal, {"k": contents}], signal)
    written = _framing_c._envelope_dumps(enveloped)
    if written is not None and written != pickle.dumps(enveloped, codec.PICKLE_PROTOCOL):
        raise AssertionError(f"envelope wrote {written!r} for {enveloped!r}")
    pieces = [impl.message_pieces(msg) for impl in (_framing_c, _framing_py)]
    if (pieces[0] is None) != (pieces[1] is None):
        raise AssertionError(f"twins disagree on message_pieces: {pieces!r}")
    for found in pieces:
        if found is not None and (b"".join(found[0]) != expected or found[1] != len(expected)):
            raise AssertionError(f"message_pieces {found!r} != {expected!r}")


def test_one_input(data: bytes) -> None:
    check_read(data)
    check_write(data)


def main() -> None:
    argv = list(sys.argv)
    if not any(os.path.isdir(arg) for arg in argv[1:] if not arg.startswith("-")):
        corpus = tempfile.mkdtemp(prefix="lute-ipc-codec-corpus-")
        for number, seed in enumerate(SEEDS):
            with open(os.path.join(corpus, f"seed-{number}"), "wb") as out:
                out.write(pickle.dumps(seed, codec.PICKLE_PROTOCOL))
        argv.append(corpus)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
