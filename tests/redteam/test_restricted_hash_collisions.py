"""Red team: the restricted unpickler can be held for minutes by a 1 MB payload (hash flooding).

Python's int hash is not randomised: ``i * (2**61 - 1)`` all hash to 0. A set (or dict) of N
such ints costs O(N**2) probes to build. Each int is 19 digits (well inside ``max_digits``),
N = 100,000 is far inside ``max_items`` and the payload is ~1.2 MB (inside every frame limit),
yet ``restricted_loads`` takes minutes (measured: 20,000 ints 3.4 s, growing as N**2) -- on an
Executor's reader, fed by an unauthenticated TCP peer, that is a hang of the reader for every
Task. A budget that bounds the payload's cost should bound this too (e.g. refuse int/float/
tuple keys whose hashes collide beyond a bound, or charge probes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    from lute_ipc.codec import restricted_loads
    M = (1 << 61) - 1
    body = bytearray(b"\\x80\\x04\\x8f(")
    for i in range(1, 100001):
        v = i * M
        b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        body += b"\\x8a" + bytes([len(b)]) + b
    body += b"\\x90."
    try:
        restricted_loads(bytes(body))
        print("decoded")
    except Exception as exc:
        print(type(exc).__name__)
    """
)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
def test_colliding_set_keys_are_bounded(pure: str) -> None:
    env = dict(os.environ, LUTE_IPC_PURE_PYTHON=pure)
    try:
        subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("restricted_loads spent more than 20 s on a 1.2 MB payload of colliding set keys")
