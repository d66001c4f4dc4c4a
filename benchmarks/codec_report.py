"""Thin wrapper: ``python benchmarks/codec_report.py [options]`` runs ``python -m lute_ipc.bench.codec_report``."""

import sys

from lute_ipc.bench.codec_report import main

if __name__ == "__main__":
    sys.exit(main())
