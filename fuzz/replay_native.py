"""Replay a corpus through fuzz/fuzz_native.py's checks without libFuzzer (for gcov coverage)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fuzz_native  # noqa: E402  (loads the extension named by LUTE_IPC_FUZZ_EXTENSION)


def main() -> None:
    corpus = sys.argv[1]
    names = sorted(os.listdir(corpus))
    for name in names:
        with open(os.path.join(corpus, name), "rb") as handle:
            fuzz_native.test_one_input(handle.read())
    print(f"replayed {len(names)} inputs")


if __name__ == "__main__":
    main()
