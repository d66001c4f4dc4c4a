"""Scenario (d): a Task subprocess writes pickles mixed with printed text on its stdout.

The Executor side is ``PipeCommunicator(Party.EXECUTOR).read(proc)`` (there is no batch
read on pipes) for lute_ipc, and an ``os.readv`` loop (into one reused buffer) over the
same bytes for the ``raw-bytes`` reference. The Task is a new interpreter (``python -m
lute_ipc.bench.pipe_task``), since its stdout must be a pipe of its own; its start-up is
not timed. LUTE's pipe reader is not a contender: it loses bytes when print() output and pickles
mix (docs/MIGRATION.md, "What is fixed"), so it could not deliver them all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Dict

from ..errors import TransportError
from . import payloads
from .control import Control, pipe_pair
from .pipe_task import CONTROL_ENV
from .transports import TRIAL_TIMEOUT, Deadline

CONTENDERS = ("lute_ipc-cython", "lute_ipc-pure", "raw-bytes")


def pipe_trial(contender: str, shape: str, count: int, timeout: float = TRIAL_TIMEOUT) -> Dict[str, float]:
    """One timed run of the pipe scenario: ``{"seconds": ...}`` from first write to last message read."""
    if contender not in CONTENDERS:
        raise TransportError(f"no pipe scenario for contender {contender!r}")
    deadline = Deadline(timeout)
    parent_read, child_write, child_read, parent_write = pipe_pair()
    env = dict(os.environ)
    env[CONTROL_ENV] = f"{child_read},{child_write}"
    proc = subprocess.Popen([sys.executable, "-m", "lute_ipc.bench.pipe_task", contender, shape, str(count)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            pass_fds=(child_read, child_write))
    os.close(child_read)
    os.close(child_write)
    control = Control(parent_read, parent_write)
    try:
        control.send({})
        if control.receive(deadline.left()) != "ready":
            raise TransportError("the pipe Task did not get ready")
        control.send("go")
        if contender == "raw-bytes":
            end = _read_raw(proc, len(payloads.pipe_stream(shape, count)), deadline)
        else:
            end = _read_messages(proc, shape, count, deadline)
        first = control.receive(deadline.left())["first_write"]
        proc.wait(deadline.left())
        if proc.returncode != 0:
            raise TransportError(f"the pipe Task exited with {proc.returncode}: "
                                 f"{proc.stderr.read().decode(errors='replace')[-500:]}")  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        control.close()
    return {"seconds": end - first}


def _read_raw(proc: subprocess.Popen[bytes], expected: int, deadline: Deadline) -> float:
    import select

    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    buffers = [bytearray(1 << 20)]  # readv into one reused buffer: no allocation per read
    got = 0
    while got < expected:
        if not select.select([fd], [], [], min(0.5, deadline.left()))[0]:
            continue
        size = os.readv(fd, buffers)
        if not size:
            raise TransportError(f"the pipe Task closed stdout after {got} of {expected} bytes")
        got += size
    return time.perf_counter()


def _read_messages(proc: subprocess.Popen[bytes], shape: str, count: int, deadline: Deadline) -> float:
    from ..message import Party
    from ..pipe import PipeCommunicator

    comm = PipeCommunicator(Party.EXECUTOR)
    expected = payloads.pipe_contents(shape, count)
    printed = payloads.TEXT_LINE.decode().strip()
    got = 0
    read = comm.read
    while got < count:
        msg = read(proc, wait=min(0.5, deadline.left()))
        contents = msg.contents
        if contents is None or (isinstance(contents, str) and not contents.replace(printed, "").strip()):
            continue  # nothing came, or printed lines
        if contents != expected[got]:
            raise TransportError(f"message {got} differs from the one sent ({repr(contents)[:80]})")
        got += 1
    end = time.perf_counter()
    comm.close()
    return end
