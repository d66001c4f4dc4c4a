"""Thin wrapper: ``python benchmarks/latency.py [options]`` runs ``python -m lute_ipc.bench.latency``."""

import sys

from lute_ipc.bench.latency import main

if __name__ == "__main__":
    sys.exit(main())
