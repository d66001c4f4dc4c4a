"""Thin wrapper: ``python benchmarks/report.py [options]`` runs ``python -m lute_ipc bench [options]``."""

import sys

from lute_ipc.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
