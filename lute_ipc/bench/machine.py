"""What the report says about the run's context: machine, versions, commit, load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from typing import Any, Dict


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit() -> str:
    """The commit of the lute_ipc source tree when it is a git checkout (``+dirty`` if modified), else ``?``."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):  # a directory, or a file in a git worktree
        return "?"
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", "lute_ipc",
                                "csrc"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (commit or "?") + ("+dirty" if dirty else "")


def describe(mode: str, rounds: int) -> Dict[str, Any]:
    """The ``meta`` part of the report."""
    from .. import __version__

    versions: Dict[str, str] = {"python": sys.version.split()[0], "lute_ipc": __version__}
    try:
        import zmq

        versions["pyzmq"] = zmq.__version__
        versions["libzmq"] = zmq.zmq_version()
    except ImportError:
        pass
    try:
        import msgpack

        versions["msgpack"] = ".".join(str(part) for part in msgpack.version)
    except ImportError:
        pass
    return {
        "mode": mode,
        "rounds": rounds,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average_start": list(os.getloadavg()),
    }
