"""Red team: tiny payloads that make the restricted unpickler allocate far beyond its budget.

docs/SECURITY.md, "Restricted unpickler", point 5: every payload has a budget (``max_bytes`` =
256 MiB of text/bytes data made, ``max_items`` = 4 Mi items). These pickles are a few bytes to a
few MB long, yet the decoder's memory grows by gigabytes before anything is refused.
Each case runs in a fresh interpreter (on both cores) so its peak RSS can be measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

MIB = 1024 * 1024

SCRIPT = textwrap.dedent(
    """
    import resource, struct, sys
    from lute_ipc.codec import restricted_loads
    data = eval(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        restricted_loads(data)
        outcome = "decoded"
    except Exception as exc:
        outcome = type(exc).__name__
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(outcome, (after - before) * 1024)
    """
)

CASES = {
    # protocol 5 BYTEARRAY8 announcing 1 GiB, followed by 3 bytes: 15 bytes in all.
    # The decoder allocates (and zeroes) the whole 1 GiB bytearray before noticing the data is short.
    "bytearray8-length-lie": "b'\\x80\\x05\\x96' + struct.pack('<Q', 1 << 30) + b'abc.'",
    # 2,000,000 EMPTY_SET opcodes (2 MB of payload): ~216 bytes of memory per payload byte, not charged.
    "empty-sets": "b'\\x80\\x04' + b'\\x8f' * 2000000 + b'.'",
}


def _run(expr: str, pure: str) -> tuple:
    env = dict(os.environ, LUTE_IPC_PURE_PYTHON=pure)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, expr], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    outcome, grown = done.stdout.split()
    return outcome, int(grown)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_small_payload_cannot_allocate_beyond_budget(case: str, pure: str) -> None:
    outcome, grown = _run(CASES[case], pure)
    # The budget's max_bytes is 256 MiB; a payload of at most 2 MB must stay well below it.
    assert grown < 256 * MIB, f"{case}: RSS grew by {grown // MIB} MiB ({outcome})"
