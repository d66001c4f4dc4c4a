"""codec: LUTE class mapping, the restricted unpickler, keys and tags."""

from __future__ import annotations

import datetime
import os
import pickle
from collections import OrderedDict
from decimal import Decimal

import pytest

from lute_ipc import codec, errors
from lute_ipc.message import Message, Party, TaskRequest, TaskRequestMessage

from .test_frame_decoder import LUTE_FRAME_MESSAGE


class _Evil:
    """Unpickling this runs os.system: the classic remote-code-execution pickle."""

    def __reduce__(self):  # type: ignore[override]
        return (os.system, ("echo pwned",))


def legacy_pickle(obj: object) -> bytes:
    """A protocol-2 pickle of ``obj`` naming ``lute.execution.ipc`` (as LUTE's classes pickle).

    Protocol 2 names classes with the GLOBAL opcode ``c<module>\\n<name>\\n`` and has no
    frame lengths, so renaming the module in the bytes gives exactly LUTE's pickle.
    """
    data = pickle.dumps(obj, 2)
    assert data.count(b"clute_ipc.message\n") >= 1
    return data.replace(b"clute_ipc.message\n", b"clute.execution.ipc\n")


def test_loads_maps_lute_message() -> None:
    assert codec.loads(LUTE_FRAME_MESSAGE) == Message("hello", "TASK_LOG")
    assert type(codec.loads(memoryview(LUTE_FRAME_MESSAGE))) is Message


def test_loads_maps_protocol_2_global_opcode() -> None:
    data = legacy_pickle(TaskRequestMessage(TaskRequest("r")))
    assert b"lute_ipc" not in data
    out = codec.loads(data)
    assert out == TaskRequestMessage(TaskRequest("r")) and type(out.contents) is TaskRequest
    assert codec.restricted_loads(data) == out


def test_loads_keeps_full_pickle_for_trusted_data() -> None:
    assert codec.loads(pickle.dumps(OrderedDict(a=1))) == OrderedDict(a=1)


def test_dumps_round_trip() -> None:
    msg = Message({"x": [1, 2.5]}, "TASK_RESULT")
    assert codec.loads(codec.dumps(msg)) == msg


@pytest.mark.parametrize("obj", [
    Message([1, 2], "TASK_RESULT"), {"a": (1, 2.0, "s", b"b", None, True)}, {1, 2}, frozenset({3}),
    bytearray(b"x"), OrderedDict(a=1), datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.timedelta(3),
    Decimal("1.5"), complex(1, 2), Party.EXECUTOR, TaskRequestMessage(TaskRequest("q")),
])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_loads_accepts_plain_data(obj: object, protocol: int) -> None:
    assert codec.restricted_loads(pickle.dumps(obj, protocol)) == obj


def test_restricted_loads_accepts_numpy_arrays() -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for protocol in (2, 4, 5):
        out = codec.restricted_loads(pickle.dumps(array, protocol))
        assert (out == array).all() and out.dtype == array.dtype


def test_restricted_loads_refuses_code_execution(tmp_path) -> None:
    with pytest.raises(errors.ForbiddenClass) as info:
        codec.restricted_loads(pickle.dumps(_Evil()))
    assert info.value.module in ("posix", "os") and isinstance(info.value, pickle.UnpicklingError)


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"),
                                         ("builtins", "__import__"), ("tests.test_codec", "_Evil")])
def test_restricted_loads_refuses_globals(module: str, name: str) -> None:
    data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."
    with pytest.raises(errors.ForbiddenClass):
        codec.restricted_loads(data)


def test_make_restricted_loads_extends_the_allow_list() -> None:
    import json
    import fractions

    data = pickle.dumps(json.dumps)  # a function, pickled by reference
    with pytest.raises(errors.ForbiddenClass):
        codec.restricted_loads(data)
    assert codec.make_restricted_loads([("json", "dumps")])(data) is json.dumps
    # a class is accepted as the allow-list entry too
    assert codec.make_restricted_loads([fractions.Fraction])(pickle.dumps(fractions.Fraction(1, 3))) == fractions.Fraction(1, 3)
    with pytest.raises(ValueError):
        codec.make_restricted_loads([("only-one",)])  # type: ignore[list-item]


def test_restricted_loads_maps_lute_classes() -> None:
    assert codec.restricted_loads(LUTE_FRAME_MESSAGE) == Message("hello", "TASK_LOG")


def test_generate_and_parse_key() -> None:
    key = codec.generate_key()
    assert len(key) == codec.KEY_SIZE and key != codec.generate_key()
    assert codec.parse_key(key.hex()) == key
    for bad in ("zz", "abcd", ""):
        with pytest.raises(errors.ConfigurationError):
            codec.parse_key(bad)


def test_frame_tag_is_hmac_sha256() -> None:
    import hashlib
    import hmac

    assert codec.frame_tag(b"k" * 32, b"data") == hmac.new(b"k" * 32, b"data", hashlib.sha256).digest()


@pytest.mark.parametrize("name", [b"bytes", b"bytearray"])
def test_restricted_loads_refuses_allocation_bombs(name: bytes) -> None:
    bomb = b"\x80\x02cbuiltins\n" + name + b"\n\x8a\x05\x00\x00\x00\x00\x10\x85R."  # name(2**36)
    with pytest.raises(pickle.UnpicklingError):
        codec.restricted_loads(bomb)


@pytest.mark.parametrize("obj", [
    Message("x", "TASK_LOG"), TaskRequestMessage(TaskRequest({"a": 1}, "other")),
    [Message(1), {"k": Party.TASK}], Message(Message("nested")),
])
def test_dumps_lute_names_round_trip_and_never_names_lute_ipc(obj: object) -> None:
    data = codec.dumps_lute_names(obj)
    assert b"lute_ipc" not in data and b"lute.execution.ipc" in data
    assert codec.loads(data) == obj
    assert codec.restricted_loads(data) == obj


def test_dumps_lute_names_decodes_as_lute_classes_in_a_lute_process(tmp_path) -> None:
    """A process where lute.execution.ipc exists (a stand-in module here) gets LUTE's own classes."""
    import subprocess
    import sys

    package = tmp_path / "lute" / "execution"
    package.mkdir(parents=True)
    (tmp_path / "lute" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "ipc.py").write_text(
        "from dataclasses import dataclass\nfrom typing import Any, Optional\n"
        "@dataclass\nclass Message:\n    contents: Optional[Any] = None\n    signal: Optional[str] = None\n")
    data = codec.dumps_lute_names(Message("hi", "TASK_RESPONSE"))
    code = ("import pickle, sys; from lute.execution.ipc import Message; "
            "m = pickle.loads(sys.stdin.buffer.read()); assert isinstance(m, Message), type(m); print(m.contents, m.signal)")
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); {code}"],
                            input=data, capture_output=True, timeout=60)
    assert result.stdout.decode().strip() == "hi TASK_RESPONSE", result.stderr.decode()


@pytest.mark.parametrize("key_size", [1, 16, 32, 63, 64, 65, 200])
def test_frame_tagger_is_hmac_sha256_for_any_key_length(key_size: int) -> None:
    import hmac

    key = bytes(range(256))[:key_size]
    for data in (b"", b"x", bytes(range(256)) * 5, memoryview(b"view data")):
        assert codec.tagger(key)(data) == hmac.digest(key, data, "sha256")
    assert codec.tagger(key) is codec.tagger(key)  # cached


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_loads_any_buffer_any_size_any_protocol(protocol: int, kind: type) -> None:
    """Small payloads take the scan path, large ones the mapping unpickler (zero-copy for views)."""
    small = [Message("s", "TASK_LOG"), TaskRequestMessage(TaskRequest("r"))]
    large = small + [{"blob": b"x" * (8192 * 4), "array": bytearray(b"y" * 100)}]
    for obj in (small, large):
        data = pickle.dumps(obj, protocol)
        assert codec.loads(kind(data)) == obj
        legacy = data.replace(b"lute_ipc.message", b"lute.execution.ipc") if protocol < 3 else None
        if legacy is not None:  # text GLOBAL opcodes: renaming keeps the pickle valid
            out = codec.loads(kind(legacy))
            assert out == obj and type(out[0]) is Message


def test_frame_tagger_over_pieces_equals_the_tag_of_their_concatenation() -> None:
    import hmac

    key = b"k" * 32
    pieces = [b"MAC;;;5;;;", memoryview(b"ab"), bytearray(b"cde")]
    assert codec.tagger(key).over(pieces) == hmac.digest(key, b"MAC;;;5;;;abcde", "sha256")
    assert codec.tagger(key).over([]) == hmac.digest(key, b"", "sha256")
