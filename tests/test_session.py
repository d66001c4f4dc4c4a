"""The transport's plain code, without sockets or sleeps: the session protocol (against the
byte-exact vectors of ``tests/vectors/session.json``, recomputed here from the formulas of
``docs/PROTOCOL.md`` section 6), the batching policy and the admission policy."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from lute_ipc.errors import AuthenticationError, FrameTooLarge
from lute_ipc.transport import admission, batching
from lute_ipc.transport import session as S

VECTORS = json.loads((Path(__file__).parent / "vectors" / "session.json").read_text())["sessions"]
IDS = [v["name"] for v in VECTORS]


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def _sessions(v: Dict[str, Any]) -> tuple:
    key = bytes.fromhex(v["key_hex"]) if v["key_hex"] else None
    task = S.TaskSession(key, nonce=bytes.fromhex(v["task_nonce_hex"]))
    executor = S.ExecutorSession(key, require_auth=v["require_auth"], max_message=v["max_message"],
                                 max_record=v["max_message"] + 1024, nonce=bytes.fromhex(v["executor_nonce_hex"]))
    return task, executor


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_vectors_follow_the_specification(v: Dict[str, Any]) -> None:
    """Recompute every octet of the vector from the written formulas (not from the code)."""
    tn, en = bytes.fromhex(v["task_nonce_hex"]), bytes.fromhex(v["executor_nonce_hex"])
    assert bytes.fromhex(v["opening_hex"]) == b"LUTE-IPC/1" + tn
    flags = (1 if v["require_auth"] else 0) | (2 if v["key_hex"] else 0)
    assert bytes.fromhex(v["challenge_hex"]) == b"LUTE-IPC/1" + bytes([flags]) + en + struct.pack(">Q", v["max_message"])
    if v["key_hex"]:
        key = bytes.fromhex(v["key_hex"])
        proof = _mac(key, b"lute-ipc/1 task", tn, en)
        welcome = _mac(key, b"lute-ipc/1 executor", tn, en)
        skey: Optional[bytes] = _mac(key, b"lute-ipc/1 session", tn, en)
    else:
        proof = welcome = bytes(32)
        skey = None
    assert bytes.fromhex(v["proof_hex"]) == b"P" + proof
    assert bytes.fromhex(v["welcome_hex"]) == b"W" + welcome
    for records in (v["task_records"], v["executor_records"]):
        for r in records:
            body = bytes.fromhex(r["body_hex"])
            head = r["type"].encode() + struct.pack(">I", len(body))
            tag = _mac(skey, struct.pack(">Q", r["seq"]), head, body) if skey else b""
            assert bytes.fromhex(r["record_hex"]) == head + body + tag


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
@pytest.mark.parametrize("chunking", ["whole", "byte-by-byte"])
def test_both_sides_produce_and_accept_the_vectors(v: Dict[str, Any], chunking: str) -> None:
    task, executor = _sessions(v)
    assert task.opening() == bytes.fromhex(v["opening_hex"])

    def feed(side: Any, data: bytes) -> List[tuple]:
        if chunking == "whole":
            return side.receive(data)
        events: List[tuple] = []
        for i in range(len(data)):
            events.extend(side.receive(data[i:i + 1]))
        return events

    assert feed(executor, task.opening()) == [(S.SEND, bytes.fromhex(v["challenge_hex"]))]
    assert feed(task, bytes.fromhex(v["challenge_hex"])) == [(S.SEND, bytes.fromhex(v["proof_hex"]))]
    assert task.max_message == v["max_message"]
    events = feed(executor, bytes.fromhex(v["proof_hex"]))
    assert events == [(S.SEND, bytes.fromhex(v["welcome_hex"])), (S.ESTABLISHED, None)]
    assert feed(task, bytes.fromhex(v["welcome_hex"])) == [(S.ESTABLISHED, None)]
    stream = b""
    for r in v["task_records"]:
        body = bytes.fromhex(r["body_hex"])
        if r["type"] == "D":
            head, tail = task.record(S.DATA, [body], len(body))
            record = head + body + tail
        else:
            record = task.confirm_request()
        assert record == bytes.fromhex(r["record_hex"])
        stream += record
    events = [(kind, bytes(value) if value is not None else None) for kind, value in feed(executor, stream)]
    bodies = [(S.BODY, bytes.fromhex(r["body_hex"])) for r in v["task_records"] if r["type"] == "D"]
    if chunking == "whole":
        assert events == bodies + [(S.CONFIRM_REQUESTED, None)]
    else:  # large bodies are the same octets whatever the chunking
        assert b"".join(b for k, b in events if k == S.BODY) == b"".join(b for _, b in bodies)
        assert events[-1] == (S.CONFIRM_REQUESTED, None)
    ack, reject = (bytes.fromhex(r["record_hex"]) for r in v["executor_records"])
    assert executor.ack(3, 0) == ack and executor.reject("bye") == reject
    assert feed(task, ack + reject) == [(S.ACKED, (3, 0)), (S.REJECTED, "bye")]


def _handshake(task: S.TaskSession, executor: S.ExecutorSession) -> None:
    (kind, challenge), = executor.receive(task.opening())
    (kind, proof), = task.receive(challenge)
    events = executor.receive(proof)
    assert events[-1] == (S.ESTABLISHED, None), events
    assert task.receive(events[0][1]) == [(S.ESTABLISHED, None)]


def _record(task: S.TaskSession, body: bytes) -> bytes:
    head, tail = task.record(S.DATA, [body], len(body))
    return head + body + tail


def test_wrong_key_is_refused_and_told_to_the_task() -> None:
    task = S.TaskSession(b"a" * 32)
    executor = S.ExecutorSession(b"b" * 32, require_auth=False, max_message=100, max_record=200)
    (_, challenge), = executor.receive(task.opening())
    (_, proof), = task.receive(challenge)
    events = executor.receive(proof)
    assert events[0][0] == S.SEND and isinstance(events[1][1], AuthenticationError)
    assert task.receive(events[0][1]) == [(S.REJECTED, "wrong key: the Task's LUTE_IPC_KEY is not this Executor's")]


def test_missing_key_fails_on_the_task_side_before_the_proof() -> None:
    task = S.TaskSession(None)
    executor = S.ExecutorSession(b"b" * 32, require_auth=True, max_message=100, max_record=200)
    (_, challenge), = executor.receive(task.opening())
    (kind, error), = task.receive(challenge)
    assert kind == S.FAILED and isinstance(error, AuthenticationError) and "LUTE_IPC_KEY is not set" in str(error)


def test_keyless_task_is_admitted_when_authentication_is_off() -> None:
    task = S.TaskSession(None)
    executor = S.ExecutorSession(b"b" * 32, require_auth=False, max_message=100, max_record=200)
    _handshake(task, executor)
    assert not task.keyed and not executor.keyed


def test_impostor_executor_is_detected_by_the_task() -> None:
    task = S.TaskSession(b"a" * 32)
    (_, challenge), = S.ExecutorSession(b"a" * 32, require_auth=True, max_message=1, max_record=1).receive(
        task.opening())
    task.receive(challenge)
    (kind, error), = task.receive(b"W" + bytes(32))  # a welcome without the key
    assert kind == S.FAILED and isinstance(error, AuthenticationError)


@pytest.mark.parametrize("attack", ["reorder", "replay", "tamper", "splice"])
def test_records_out_of_sequence_or_altered_fail_their_tag(attack: str) -> None:
    key = b"k" * 32
    task = S.TaskSession(key)
    executor = S.ExecutorSession(key, require_auth=True, max_message=100, max_record=200)
    _handshake(task, executor)
    r0, r1 = _record(task, b"zero"), _record(task, b"one")
    if attack == "reorder":
        stream = r1 + r0
    elif attack == "replay":
        stream = r0 + r0
    elif attack == "tamper":
        stream = r0[:6] + b"Z" + r0[7:]
    else:
        other = S.TaskSession(key)
        other_executor = S.ExecutorSession(key, require_auth=True, max_message=100, max_record=200)
        _handshake(other, other_executor)
        stream = _record(other, b"zero")
    events = executor.receive(stream)
    good = [e for e in events if e[0] == S.BODY]
    assert len(good) == (1 if attack == "replay" else 0)
    assert events[-1][0] == S.FAILED and isinstance(events[-1][1], S.RecordRejected)
    assert executor.receive(_record(task, b"later")) == []  # the session is over


def test_unproven_octets_are_bounded() -> None:
    executor = S.ExecutorSession(None, require_auth=False, max_message=100, max_record=200)
    (kind, _), = executor.receive(S.MAGIC + bytes(S.NONCE_SIZE))
    events = executor.receive(b"P" * 10 + b"x" * S.UNPROVEN_LIMIT)
    assert events[-1][0] == S.FAILED
    assert S.ExecutorSession(None, require_auth=False, max_message=1, max_record=1).receive(b"MSG;;;")[0][0] == S.FAILED


def test_record_over_the_limit_is_refused_at_its_head() -> None:
    task = S.TaskSession(None)
    executor = S.ExecutorSession(None, require_auth=False, max_message=100, max_record=200)
    _handshake(task, executor)
    (kind, error), = executor.receive(b"D" + struct.pack(">I", 201))
    assert kind == S.FAILED and isinstance(error, FrameTooLarge) and error.limit == 200


def test_large_record_in_many_chunks_is_one_body() -> None:
    task = S.TaskSession(b"k" * 32)
    executor = S.ExecutorSession(b"k" * 32, require_auth=True, max_message=1 << 20, max_record=1 << 20)
    _handshake(task, executor)
    body = bytes(range(256)) * 1000
    record = _record(task, body)
    events: List[tuple] = []
    for i in range(0, len(record), 4096):
        events.extend(executor.receive(record[i:i + 4096]))
    assert [(k, bytes(b)) for k, b in events] == [(S.BODY, body)]


# --------------------------------------------------------------------------- batching policy
def test_batching_policy_without_a_clock() -> None:
    policy = batching.FlushPolicy(0.01, 100, now=0.0)
    assert policy.after_append(1.0, "TASK_LOG", 10, True) == batching.FLUSH  # first after a quiet spell
    assert policy.after_append(1.001, "TASK_LOG", 10, True) == batching.SCHEDULE  # right behind: batched
    assert policy.deadline == pytest.approx(1.011)
    assert policy.after_append(1.002, None, 20, False) == batching.KEEP
    assert not policy.due(1.005) and policy.due(1.011)
    assert policy.after_append(1.012, "TASK_LOG", 30, False) == batching.FLUSH  # the bound passed
    assert policy.after_append(1.013, "TASK_LOG", 10, True) == batching.SCHEDULE
    assert policy.after_append(1.014, "TASK_RESULT", 20, False) == batching.FLUSH  # acted on at once
    assert policy.after_append(1.015, "TASK_LOG", 10, True) == batching.SCHEDULE
    assert policy.after_append(1.016, "TASK_LOG", 100, False) == batching.FLUSH  # size
    write_through = batching.FlushPolicy(0.0, 100)
    assert write_through.after_append(5.0, "TASK_LOG", 1, True) == batching.FLUSH


# --------------------------------------------------------------------------- admission policy
@pytest.mark.parametrize("open_count, unproven, expected", [
    (0, 0, admission.ACCEPT),
    (9, 3, admission.ACCEPT),
    (10, 3, admission.MAKE_ROOM),   # table full: an unproven connection goes
    (5, 4, admission.MAKE_ROOM),    # unproven budget full
    (10, 0, admission.PAUSE),       # all proven: never closed, wait
])
def test_admission_never_closes_a_proven_connection(open_count: int, unproven: int, expected: int) -> None:
    assert admission.admit(open_count, unproven, max_connections=10, max_unproven=4) == expected
