"""A relay between Tasks and their Executor's endpoint, for tests that count or capture what
Tasks send on the wire."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import List, Optional


class Relay:
    """Forwards every connection made to ``address`` to ``target`` (a TCP port on loopback, or
    a Unix socket path; then ``tmp_path`` holds the relay's own socket). It counts the
    connections in ``connections`` and records in ``sent`` every byte the connecting side sent.

    An end of stream is passed on (``shutdown(SHUT_WR)``): a side that stopped sending still
    hears the other, as without the relay."""

    def __init__(self, target: str, tmp_path: Optional[Path] = None) -> None:
        self.target = target
        if target.isdigit():
            self.listener = socket.create_server(("127.0.0.1", 0))
            self.address = str(self.listener.getsockname()[1])
        else:
            assert tmp_path is not None, "a Unix socket relay needs a folder for its socket"
            self.address = str(tmp_path / "relay.sock")
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.address)
            self.listener.listen(128)
        self.connections = 0
        self.sent = bytearray()
        self._open: List[socket.socket] = []
        self._sending: List[threading.Thread] = []  # one per connection: its client -> target pump
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _connect(self) -> socket.socket:
        if self.target.isdigit():
            return socket.create_connection(("127.0.0.1", int(self.target)))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.target)
        return sock

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = self._connect()
            sending = threading.Thread(target=self._pump, args=(client, server, True), daemon=True)
            with self._lock:
                self.connections += 1
                self._open += [client, server]
                self._sending.append(sending)
            sending.start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if record:
                    self.sent += data
                sink.sendall(data)
        except OSError:  # reset, or closed by close(): both directions end
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def wait_sent(self, timeout: float) -> bool:
        """True once every connection so far ended on the connecting side (``sent`` is complete)."""
        with self._lock:
            sending = list(self._sending)
        for thread in sending:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in sending)

    def close(self) -> None:
        """Stop accepting and end every relayed connection."""
        self.listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv()
                except OSError:
                    pass
                sock.close()
