"""A private ``sshd`` for the tests of the ssh tunnel: its files (generated host and user keys, a
server configuration, a client configuration naming it by an alias), written in a folder of
the test's own. The tests start ``sshd -D -e -f <folder>/sshd_config`` where they need it."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

SSHD: Optional[str] = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def write_sshd_files(root: Path, address: str, port: int, alias: str, client_extra: str = "") -> None:
    """In ``root``: ``sshd_config`` for an sshd on ``address:port`` that accepts only the generated
    user key (Unix socket forwarding allowed), and ``ssh_config`` naming it ``alias`` with that key
    and its host key pinned; ``client_extra`` ends ``ssh_config`` (more options or hosts)."""
    _keygen(root / "host_key")
    _keygen(root / "user_key")
    shutil.copy(root / "user_key.pub", root / "authorized_keys")
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nStrictModes no\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nAllowStreamLocalForwarding yes\nLogLevel ERROR\n")
    host_key = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[{address}]:{port} {host_key[0]} {host_key[1]}\n")
    (root / "ssh_config").write_text(
        f"Host {alias}\n  HostName {address}\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {root / 'user_key'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {root / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n" + client_extra)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
