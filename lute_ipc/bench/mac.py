"""``python -m lute_ipc.bench.mac``: what authenticating a frame costs, HMAC-SHA256 against keyed BLAKE2.

Signed TCP frames carry a tag over head, length and payload. This measures, in this
process, the cost per small frame (the text and objects shapes' frames, ~150-220 bytes)
and per GB (64 MiB buffers) of:

* ``hmac-sha256``: lute_ipc's :class:`~lute_ipc.codec.FrameTagger` (HMAC-SHA256 with the
  keyed inner and outer states computed once; OpenSSL's SHA-256, which uses the CPU's SHA
  instructions where it has them);
* ``hmac.digest``: the standard library's one-shot ``hmac.digest(key, data, "sha256")``;
* ``blake2b-keyed`` / ``blake2s-keyed``: ``hashlib.blake2b(key=...)`` (and 2s), a keyed
  state copied per frame, 32-byte tags.

Medians of interleaved rounds; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import time
from typing import Callable, Dict, List, Optional

from .timing import median


def taggers(key: bytes) -> Dict[str, Callable[[bytes], bytes]]:
    """The contenders, each mapping a buffer to its 32-byte tag."""
    from ..codec import FrameTagger

    sha = FrameTagger(key)
    b2b = hashlib.blake2b(key=key, digest_size=32)
    b2s = hashlib.blake2s(key=key, digest_size=32)

    def blake2b(data: bytes) -> bytes:
        state = b2b.copy()
        state.update(data)
        return state.digest()

    def blake2s(data: bytes) -> bytes:
        state = b2s.copy()
        state.update(data)
        return state.digest()

    return {"hmac-sha256": sha, "hmac.digest": lambda data: hmac.digest(key, data, "sha256"),
            "blake2b-keyed": blake2b, "blake2s-keyed": blake2s}


def measure(rounds: int = 5, small: int = 150, frames: int = 100_000, big_mib: int = 64) -> Dict[str, Dict[str, float]]:
    """``{contender: {"us_per_frame": ..., "s_per_gb": ...}}``, medians of ``rounds`` interleaved rounds."""
    key = os.urandom(32)
    contenders = taggers(key)
    frame = os.urandom(small)
    big = os.urandom(big_mib << 20)
    per_frame: Dict[str, List[float]] = {name: [] for name in contenders}
    per_gb: Dict[str, List[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, tag in contenders.items():
            start = time.perf_counter()
            for _ in range(frames):
                tag(frame)
            per_frame[name].append((time.perf_counter() - start) / frames * 1e6)
            start = time.perf_counter()
            tag(big)
            per_gb[name].append((time.perf_counter() - start) / len(big) * 1e9)
    return {name: {"us_per_frame": median(per_frame[name]), "s_per_gb": median(per_gb[name])} for name in contenders}


def main(argv: Optional[List[str]] = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python -m lute_ipc.bench.mac", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frame-bytes", type=int, default=150)
    args = parser.parse_args(argv)
    import ssl

    print(f"frame tags: {args.frame_bytes}-byte frames and 64 MiB buffers, median of {args.rounds} rounds; "
          f"{ssl.OPENSSL_VERSION}; load average {os.getloadavg()[0]:.1f}")
    results = measure(args.rounds, args.frame_bytes)
    print(f"{'tag':<15}{'us/frame':>10}{'s/GB':>8}{'GB/s':>8}")
    for name, row in results.items():
        print(f"{name:<15}{row['us_per_frame']:>10.2f}{row['s_per_gb']:>8.2f}{1 / row['s_per_gb']:>8.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
