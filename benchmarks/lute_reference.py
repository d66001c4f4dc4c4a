"""The original LUTE algorithms, re-expressed from their description in DESIGN.md.

Baselines for benchmarks and compatibility tests only. They live in the installed package
(:mod:`lute_ipc.bench.lute_algorithm`, so ``python -m lute_ipc bench`` works from an
install); this module re-exports them for the scripts and tests under ``benchmarks/``.
"""

from lute_ipc.bench.lute_algorithm import HEAD, SEP, TRAILER, LuteDecoder, LuteSocketReader, lute_encode

__all__ = ["HEAD", "SEP", "TRAILER", "LuteDecoder", "LuteSocketReader", "lute_encode"]
