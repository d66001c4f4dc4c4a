"""An ssh tunnel from a private local Unix socket to the Executor's Unix socket on another host.

Used by a Task whose ``LUTE_EXECUTOR_HOST`` is not this machine while Unix sockets are in
use (LUTE's cross-host path). The tunnel is ``ssh -T -L <local>:<remote> <host> cat``
in batch mode (never prompts) with ``ExitOnForwardFailure``; the remote ``cat`` keeps the
session open until :meth:`SshTunnel.close` closes its stdin, after which ssh exits as soon
as the forwarded connections have delivered their bytes (nothing is cut off); :meth:`SshTunnel.open` returns
once the local socket accepts connections (polling ``connect``, bounded by a timeout) and
raises :class:`~lute_ipc.errors.TunnelError` with ssh's own error output when ssh fails.

How to reach the host is ssh's business: ``ssh_options`` (constructor) or the
environment variable ``LUTE_SSH_OPTIONS`` (shell words, e.g. ``-F ~/.ssh/lute_config``)
are passed to ``ssh`` before the destination, so an alias in an ssh config file can name
the real host name, port, user and key. The local socket lives in a private (0700)
directory that :meth:`SshTunnel.close` removes.

A dead network path is noticed by ssh's keep-alive: ``ServerAliveInterval=3`` and
``ServerAliveCountMax=2`` by default, so ssh exits about 9 s (3 x (2 + 1)) after the Executor's
host stopped answering (measured: 9-10 s; ssh's own default never gives up, and the former
30 s x 3 took about 2 minutes).
The Task's next write then fails: a raw socket gets :class:`~lute_ipc.errors.TunnelError`
from :meth:`SshTunnel.check`, ZeroMQ sees its connection dropped. An Executor that only reads
slowly does not trigger it (sshd answers keep-alives whatever its forwarded channel does).
These two options are placed after ``ssh_options``, so a ``-o ServerAliveInterval=...`` there
wins (ssh keeps the first value it reads); values in an ssh config file do not (command-line
options come first): pass ``server_alive_interval=0`` to leave both to ssh's configuration.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import List, Optional, Sequence, Type

from .errors import TunnelError, UsageError

__all__ = ["SshTunnel", "DEFAULT_TUNNEL_TIMEOUT", "DEFAULT_SERVER_ALIVE_INTERVAL",
           "DEFAULT_SERVER_ALIVE_COUNT_MAX"]

logger = logging.getLogger(__name__)

DEFAULT_TUNNEL_TIMEOUT = 15.0
"""Seconds :meth:`SshTunnel.open` waits for the tunnel to accept connections."""
DEFAULT_SERVER_ALIVE_INTERVAL = 3
"""ssh's ``ServerAliveInterval``: seconds without data from the server before a keep-alive."""
DEFAULT_SERVER_ALIVE_COUNT_MAX = 2
"""ssh's ``ServerAliveCountMax``: unanswered keep-alives before ssh gives up (and exits)."""

_BASE_OPTIONS = (
    "-T",  # no tty
    "-o", "BatchMode=yes",  # never ask for a password or a host key confirmation
    "-o", "ExitOnForwardFailure=yes",
    "-o", "StreamLocalBindUnlink=yes",
    "-o", "LogLevel=ERROR",
)
_REMOTE_COMMAND = "cat"
"""Runs until its stdin (ours, through ssh) closes. Closing it ends the session; ssh then
exits once every forwarded connection has drained, so no queued byte is lost on close."""


class SshTunnel:
    """Forward a private local Unix socket to ``remote_socket`` on ``destination`` over ssh.

    Args:
        destination: the ssh destination (host name, ``user@host`` or a config alias).
        remote_socket: path of the Executor's Unix socket on that host.
        ssh_options: extra ``ssh`` arguments placed before the destination (``-F``, ``-p``,
            ``-i``, ``-o ...``).
        ssh_command: the ssh client to run.
        timeout: seconds to wait for the tunnel to accept connections.
        server_alive_interval: ssh's ``ServerAliveInterval`` (seconds); 0 leaves both
            keep-alive options to ssh's configuration.
        server_alive_count_max: ssh's ``ServerAliveCountMax``. ssh exits when the Executor's
            host has not answered for about ``server_alive_interval`` x
            (``server_alive_count_max`` + 1) seconds.
    """

    def __init__(
        self,
        destination: str,
        remote_socket: str,
        *,
        ssh_options: Sequence[str] = (),
        ssh_command: str = "ssh",
        timeout: float = DEFAULT_TUNNEL_TIMEOUT,
        server_alive_interval: int = DEFAULT_SERVER_ALIVE_INTERVAL,
        server_alive_count_max: int = DEFAULT_SERVER_ALIVE_COUNT_MAX,
    ) -> None:
        if not destination:
            raise UsageError("the ssh destination must not be empty")
        if server_alive_interval < 0 or server_alive_count_max < 1:
            raise UsageError("server_alive_interval must be >= 0 and server_alive_count_max >= 1")
        self.destination = destination
        self.remote_socket = remote_socket
        self.ssh_options = list(ssh_options)
        self.ssh_command = ssh_command
        self.timeout = float(timeout)
        self.server_alive_interval = int(server_alive_interval)
        self.server_alive_count_max = int(server_alive_count_max)
        self._ended: Optional[str] = None
        self._dir: Optional[str] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self.local_socket: Optional[str] = None

    def command(self, local_socket: str) -> List[str]:
        """The ssh command line for forwarding ``local_socket``."""
        alive: List[str] = []
        if self.server_alive_interval:  # after ssh_options: a -o there wins (ssh keeps the first value)
            alive = ["-o", f"ServerAliveInterval={self.server_alive_interval}",
                     "-o", f"ServerAliveCountMax={self.server_alive_count_max}"]
        return [self.ssh_command, *_BASE_OPTIONS, *self.ssh_options, *alive,
                "-L", f"{local_socket}:{self.remote_socket}", self.destination, _REMOTE_COMMAND]

    @property
    def running(self) -> bool:
        """True while the ssh process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def check(self) -> None:
        """Raise :class:`~lute_ipc.errors.TunnelError` with ssh's exit code and error output if
        the tunnel is not running (ssh ended: the host stopped answering, the forwarding
        failed, or ssh was killed)."""
        proc = self._proc
        if proc is None:
            raise TunnelError(f"the ssh tunnel to the Executor's host {self.destination} is not open")
        code = proc.poll()
        if code is None:
            return
        if self._ended is None:
            self._ended = (f"the ssh tunnel to the Executor's host {self.destination} ended (ssh exit code "
                           f"{code}): {self._stderr() or 'no error output'}. ssh exits when the host has not "
                           f"answered its keep-alives for about {self._alive_bound()}, or when it is killed")
        raise TunnelError(self._ended)

    def _alive_bound(self) -> str:
        if not self.server_alive_interval:
            return "ServerAliveInterval x ServerAliveCountMax seconds (ssh configuration)"
        return f"{self.server_alive_interval * (self.server_alive_count_max + 1)} s"

    def open(self) -> str:
        """Start ssh and wait until the tunnel accepts; return the local socket path."""
        if self._proc is not None:
            return self.local_socket  # type: ignore[return-value]
        if shutil.which(self.ssh_command) is None:
            raise TunnelError(f"cannot open an ssh tunnel to {self.destination}: the ssh client "
                              f"{self.ssh_command!r} is not installed (or not on PATH); install openssh-client "
                              "or use TCP (set LUTE_USE_TCP)")
        self._dir = tempfile.mkdtemp(prefix="lute-tunnel-")
        self.local_socket = os.path.join(self._dir, "executor.sock")
        cmd = self.command(self.local_socket)
        logger.debug("opening ssh tunnel to %s: %s", self.destination, " ".join(cmd))
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            self.close()
            raise TunnelError(f"cannot start {self.ssh_command!r}: {exc}") from exc
        try:
            self._wait_until_ready()
        except BaseException:
            self.close()
            raise
        return self.local_socket

    def _wait_until_ready(self) -> None:
        assert self._proc is not None and self.local_socket is not None
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            code = self._proc.poll()
            if code is not None:
                raise TunnelError(f"ssh tunnel to {self.destination} failed (ssh exit code {code}): "
                                  f"{self._stderr() or 'no error output'}. Check that 'ssh "
                                  f"{' '.join(self.ssh_options + [self.destination])}' works without a "
                                  "password and that the Executor socket exists there.")
            if self._accepts(self.local_socket):
                return
            if time.monotonic() >= deadline:
                raise TunnelError(f"ssh tunnel to {self.destination} did not accept connections within "
                                  f"{self.timeout:g} s (ssh still running); check the network and the "
                                  "ssh options (LUTE_SSH_OPTIONS)")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    @staticmethod
    def _accepts(path: str) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        finally:
            probe.close()

    def _stderr(self) -> str:
        if self._proc is None or self._proc.stderr is None:
            return ""
        try:
            return self._proc.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def close(self, drain_timeout: float = 10.0) -> None:
        """Stop ssh and remove the local socket and its directory. Idempotent.

        Close your connections through the tunnel first: ssh is asked to finish (its remote
        command's stdin is closed) and given up to ``drain_timeout`` seconds to deliver what
        those connections sent before it is terminated.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            try:
                proc.wait(drain_timeout if proc.poll() is None else 0)
            except subprocess.TimeoutExpired:
                logger.warning("ssh tunnel to %s did not finish within %.1f s; terminating it",
                               self.destination, drain_timeout)
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> SshTunnel:
        self.open()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()
