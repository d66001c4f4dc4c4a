"""A hostile client: opens COUNT connections to the Executor, sends nothing, holds them.

usage: idle_clients.py COUNT   (prints "ready N" once N connections are made, exits when stdin closes)
Uses LUTE_USE_TCP/LUTE_PORT or LUTE_SOCKET. Connections the Executor closes are just left closed.
"""

import os
import socket
import sys


def connect() -> socket.socket:
    """A connection to the Executor named by LUTE_USE_TCP/LUTE_PORT or LUTE_SOCKET (TCP: loopback)."""
    if "LUTE_USE_TCP" in os.environ:
        return socket.create_connection(("127.0.0.1", int(os.environ["LUTE_PORT"])))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["LUTE_SOCKET"])
    return sock


def main() -> None:
    held = []
    for _ in range(int(sys.argv[1])):
        try:
            held.append(connect())
        except OSError as exc:
            print("connect failed:", exc, file=sys.stderr)
            break
    print("ready", len(held), flush=True)
    sys.stdin.read()
    for sock in held:
        sock.close()


if __name__ == "__main__":
    main()
