"""Thin wrapper: ``python benchmarks/splitter_report.py [options]`` runs ``python -m lute_ipc.bench.splitter_report``."""

import sys

from lute_ipc.bench.splitter_report import main

if __name__ == "__main__":
    sys.exit(main())
