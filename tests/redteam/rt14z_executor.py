"""A lute_ipc Executor in its own process for the red-team 14z tests (fresh interpreter: its peak
RSS and descriptors are its own). ``argv[1]``: JSON keyword options of ``SocketCommunicator``,
``argv[2]``: optional open-file limit. It prints the ``LUTE_*`` environment it exports as one JSON
line, then answers one JSON line per command read on stdin:

* ``read N WAIT``: read up to N messages within WAIT seconds -> ``{"contents": [...]}`` (repr)
* ``stats``: ``SocketCommunicator.stats`` as a dict
* ``rss``: ``{"rss_mib", "peak_mib"}`` (VmRSS, VmHWM)
* ``close``: close the communicator and exit
"""

import json
import os
import resource
import sys
import time

from lute_ipc import Party, SocketCommunicator


def status_mib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    return -1


def main() -> None:
    options = json.loads(sys.argv[1])
    if len(sys.argv) > 2:
        limit = int(sys.argv[2])
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    ex = SocketCommunicator(Party.EXECUTOR, **options)
    ex.delayed_setup()
    print(json.dumps({k: v for k, v in os.environ.items() if k.startswith("LUTE_")}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "read":
            count, wait = int(command[1]), float(command[2])
            got: list = []
            deadline = time.monotonic() + wait
            while len(got) < count and time.monotonic() < deadline:
                got += ex.read_many(count - len(got), wait=0.1)
            answer: object = {"contents": [repr(m.contents) for m in got]}
        elif command[0] == "stats":
            stats = ex.stats
            answer = {k: v for k, v in vars(stats).items() if isinstance(v, (int, float, dict))}
        elif command[0] == "rss":
            answer = {"rss_mib": status_mib("VmRSS"), "peak_mib": status_mib("VmHWM")}
        elif command[0] == "close":
            ex.close()
            print("{}", flush=True)
            return
        else:
            answer = {"error": f"unknown command {command[0]!r}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
