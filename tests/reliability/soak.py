"""Soak: a bounded mixed workload with periodic faults, counting sent vs received per sender.

usage: python tests/reliability/soak.py [--quick] [--seconds N]

This process is the Executor. In cycles of about 10 s (3 s with --quick) it goes round the four
transports (raw/ZeroMQ x Unix/TCP loopback): binds an Executor, starts Task processes (two
steady senders at 1,500 messages/s, one burst sender as fast as it can, sizes 64 B - 256 KiB)
and injects one fault per cycle, in turn: a Task SIGKILLed mid-run, a peer sending garbage
then valid frames, a peer stalling mid-frame (raw; idle_timeout 1 s), a slow consumer
(2 s at about 1,600 messages/s against queue_size 2,000). The Executor is closed at the end
of each cycle (all Tasks done), so descriptors and memory are checked across many
set-up/tear-down rounds.

Counted per sender: ``sent`` (write() calls that returned, reported by the Task when it
exits) and ``received``. ``lost`` = sent - received over senders that lived to the end
(must be 0); a SIGKILLed sender must have delivered a gap-free prefix. Descriptors and RSS of
this process are measured after the first cycle (warm-up) and at the end.

The last line is the summary, e.g.::

    soak: PASS cycles=10 senders=40 sent=123456 received=123456 lost=0 killed=3 ... peak_rss_mib=80.1 fds_before=9 fds_after=9

Exit status 0 when lost == 0, no reordering or corruption, every live sender exited 0,
every fault ended as expected and no descriptor leaked; 1 otherwise. Bounded: at most
``--seconds`` (default 300; 30 with --quick) plus one cycle.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from lute_ipc import Message, Party, SocketCommunicator, framing  # noqa: E402
from lute_ipc.framing import encode_frame  # noqa: E402
from tests.reliability.common import child_env, current_rss_mib, open_fds, payload_ok, peak_rss_mib  # noqa: E402
from tests.reliability.harness import Group  # noqa: E402

TRANSPORTS = [(False, False), (False, True), (True, False), (True, True)]
FAULTS = ["kill", "garbage", "stall", "slow"]


def _name(transport) -> str:
    return ("zmq" if transport[0] else "raw") + "-" + ("tcp" if transport[1] else "unix")


class Totals:
    def __init__(self) -> None:
        self.sent = self.received = self.lost = self.killed = self.senders = 0
        self.problems: List[str] = []
        self.faults: Dict[str, int] = {}


def _peer_connect(tcp: bool) -> socket.socket:
    if tcp:
        return socket.create_connection(("127.0.0.1", int(os.environ["LUTE_PORT"])), timeout=5)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(os.environ["LUTE_SOCKET"])
    return sock


def fault_for(index: int, transport) -> str:
    """The fault of cycle ``index``: every fault meets every transport in turn."""
    fault = FAULTS[(index + index // len(TRANSPORTS)) % len(FAULTS)]
    if fault == "stall" and transport[0]:
        fault = "garbage"  # idle_timeout applies to raw connections only
    return fault


def run_cycle(index: int, transport, cycle_seconds: float, totals: Totals) -> None:
    use_zmq, tcp = transport
    fault = fault_for(index, transport)
    totals.faults[fault] = totals.faults.get(fault, 0) + 1
    saved = {k: os.environ.get(k) for k in ("LUTE_USE_TCP", "LUTE_BIND_HOST")}
    if tcp:
        os.environ["LUTE_USE_TCP"] = "1"
        os.environ["LUTE_BIND_HOST"] = "127.0.0.1"
    group = Group()
    # Raw TCP: a peer without a session is refused at once where authentication is on, so the garbage
    # and stall faults run against LUTE's TCP set-up without authentication (plain frames served).
    plain_peer = tcp and not use_zmq and fault in ("garbage", "stall")
    ex = SocketCommunicator(Party.EXECUTOR, use_zmq=use_zmq, queue_size=2000, idle_timeout=1.0,
                            require_auth=False if plain_peer else None)
    try:
        ex.delayed_setup()
        env = child_env({"LUTE_USE_ZMQ": "1" if use_zmq else "0"})
        steady_count = int(1500 * cycle_seconds)
        tasks = {f"c{index}-steady{i}": group.task({"sender": f"c{index}-steady{i}", "count": steady_count,
                                                    "rate": 1500}, env) for i in range(2)}
        tasks[f"c{index}-burst"] = group.task({"sender": f"c{index}-burst", "count": int(4000 * cycle_seconds)}, env)
        victim = None
        if fault == "kill":
            victim = f"c{index}-victim"
            tasks[victim] = group.task({"sender": victim, "count": 10**6, "rate": 3000}, env)
        seqs: Dict[str, List[int]] = {}
        corrupt = 0
        key = bytes.fromhex(os.environ["LUTE_IPC_KEY"]) if tcp and not plain_peer else None
        start = time.monotonic()
        fault_done = False
        stall_sock = None
        slow_until = 0.0
        last_message = start
        deadline = start + cycle_seconds * 4 + 30
        while time.monotonic() < deadline:
            now = time.monotonic()
            if not fault_done and now - start > cycle_seconds / 3:
                fault_done = True
                if fault == "kill":
                    tasks[victim].kill(signal.SIGKILL)
                elif fault == "garbage":
                    valid = [encode_frame(Message(contents=(f"c{index}-peer", i, b"p" * 100)), key=key)
                             for i in range(100)]
                    if use_zmq:
                        import zmq

                        ctx = zmq.Context()
                        push = ctx.socket(zmq.PUSH)
                        push.setsockopt(zmq.LINGER, 2000)
                        push.connect(f"tcp://127.0.0.1:{os.environ['LUTE_PORT']}" if tcp
                                     else f"ipc://{os.environ['LUTE_SOCKET']}")
                        push.send(os.urandom(500))
                        push.send(b"".join(valid))
                        push.close()
                        ctx.term()
                    else:
                        with _peer_connect(tcp) as peer:
                            peer.sendall(os.urandom(500) + b"MSG;;;9;;;x" + b"".join(valid))
                    tasks[f"c{index}-peer"] = None  # type: ignore[assignment]
                elif fault == "stall":
                    stall_sock = _peer_connect(tcp)
                    stall_sock.sendall(encode_frame(Message(contents="stalled"), key=key)[:20])
                elif fault == "slow":
                    slow_until = now + 2.0
            slow = now < slow_until
            batch = ex.read_many(16 if slow else 4000, wait=0.05)
            if slow:
                time.sleep(0.01)
            for msg in batch:
                c = msg.contents
                if isinstance(c, tuple) and len(c) == 3:
                    sender, seq, payload = c
                    seqs.setdefault(sender, []).append(seq)
                    if not sender.endswith("-peer") and not payload_ok(seq, payload):
                        corrupt += 1
            if batch:
                last_message = time.monotonic()
            live = {s: t for s, t in tasks.items() if t is not None and s != victim}
            if all(t.proc.poll() is not None for t in live.values()):
                # every live sender has exited: stop once all it reported is here, or after 3 s of silence
                accounted = all((t.find("done") or {}).get("sent", -1) == len(seqs.get(s, []))
                                for s, t in live.items())
                peer_done = fault != "garbage" or len(seqs.get(f"c{index}-peer", [])) >= 100
                if (accounted and peer_done) or time.monotonic() - last_message > 3.0:
                    break
        stats = ex.stats
        if stall_sock is not None:
            stall_sock.settimeout(5)
            try:
                freed = stall_sock.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                freed = False
            stall_sock.close()
            if not freed or stats.idle_closed < 1:
                totals.problems.append(f"cycle {index}: the stalled peer was not freed by idle_timeout")
        if corrupt:
            totals.problems.append(f"cycle {index}: {corrupt} corrupt payloads")
        for sender, child in tasks.items():
            got = seqs.get(sender, [])
            if any(b <= a for a, b in zip(got, got[1:])):
                totals.problems.append(f"cycle {index} {sender}: reordered or duplicated")
            if child is None:  # the garbage peer
                if got != list(range(100)):
                    totals.problems.append(f"cycle {index} {sender}: {len(got)}/100 valid frames after garbage")
                continue
            totals.senders += 1
            code = child.wait(15)
            if sender == victim:
                totals.killed += 1
                if got != list(range(len(got))):
                    totals.problems.append(f"cycle {index} {sender} (killed): not a gap-free prefix")
                continue
            done = child.find("done")
            if code != 0 or done is None:
                totals.problems.append(f"cycle {index} {_name(transport)} {sender}: exit {code} "
                                       f"{child.find('error')} {child.stderr()[-300:].strip()!r}")
                if done is None:
                    continue
            totals.sent += done["sent"]
            totals.received += len(got)
            if len(got) != done["sent"]:
                totals.lost += done["sent"] - len(got)
                missing = sorted(set(range(done["sent"])) - set(got))
                totals.problems.append(f"cycle {index} {_name(transport)} {sender}: sent {done['sent']} "
                                       f"received {len(got)}, missing seq {missing[:1]}..{missing[-1:]} "
                                       f"(exit {code}, reader stats {vars(stats)})")
    finally:
        group.cleanup()
        ex.clear_communicator()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s form (3 s cycles)")
    parser.add_argument("--seconds", type=float, default=None, help="total duration (default 300, quick 30)")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (30.0 if args.quick else 300.0)
    cycle_seconds = 3.0 if args.quick else 10.0
    for name in list(os.environ):
        if name.startswith("LUTE_") and name != "LUTE_IPC_PURE_PYTHON":
            del os.environ[name]
    totals = Totals()
    began = time.monotonic()
    index = 0
    fds_before = rss_before = None
    threads_before = None
    while index < 1 or time.monotonic() - began + 1.3 * cycle_seconds < seconds:  # the last cycle ends in time
        transport = TRANSPORTS[index % len(TRANSPORTS)]
        run_cycle(index, transport, cycle_seconds, totals)
        print(f"cycle {index} {_name(transport)} {fault_for(index, transport)}: sent={totals.sent} "
              f"received={totals.received} lost={totals.lost} problems={len(totals.problems)} "
              f"fds={open_fds()} rss={current_rss_mib():.0f}MiB t={time.monotonic() - began:.0f}s", flush=True)
        if index == 0:  # after a warm-up cycle: imports, lazily created contexts
            fds_before, rss_before = open_fds(), current_rss_mib()
            threads_before = threading.active_count()
        index += 1
    time.sleep(0.2)
    fds_after, rss_after = open_fds(), current_rss_mib()
    if fds_after != fds_before:
        totals.problems.append(f"descriptor leak: {fds_before} -> {fds_after}: "
                               + " ".join(sorted(os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                                                 if os.path.exists(f"/proc/self/fd/{fd}"))))
    if threading.active_count() != threads_before:
        totals.problems.append(f"thread leak: {threads_before} -> {threading.active_count()}")
    for problem in totals.problems[:30]:
        print("problem:", problem, flush=True)
    ok = totals.lost == 0 and not totals.problems
    print(f"soak: {'PASS' if ok else 'FAIL'} core={framing.IMPLEMENTATION} cycles={index} senders={totals.senders} "
          f"sent={totals.sent} received={totals.received} lost={totals.lost} killed={totals.killed} "
          f"faults={','.join(f'{k}:{v}' for k, v in sorted(totals.faults.items()))} "
          f"problems={len(totals.problems)} peak_rss_mib={peak_rss_mib():.1f} rss_before_mib={rss_before:.1f} "
          f"rss_after_mib={rss_after:.1f} fds_before={fds_before} fds_after={fds_after} "
          f"elapsed={time.monotonic() - began:.0f}s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
