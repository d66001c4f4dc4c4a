"""``python -m lute_ipc``: the command line (see :mod:`lute_ipc.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m lute_ipc"))
