"""Thin wrapper: ``python benchmarks/callgrind_decode.py [options]`` runs ``python -m lute_ipc.bench.callgrind``."""

import sys

from lute_ipc.bench.callgrind import main

if __name__ == "__main__":
    sys.exit(main())
