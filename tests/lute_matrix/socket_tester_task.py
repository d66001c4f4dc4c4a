"""The socket messages of LUTE's ``SocketTester`` (``array_size: 9000000``), sent as LUTE's Tasks send.

argv: ``lute_ipc`` or ``lute`` (the communicator: lute_ipc's, or LUTE's own with
``LUTE_IPC_SHIM=0``), then ``separator`` or ``plain``.

Two messages of 9,000,000 float64 (72 MB each), one ``SocketCommunicator`` per message
(``delayed_setup(); write(); clear_communicator()``): the array as a message without signal,
then a ``TASK_RESULT`` holding another. Their values are 0.5, except, with ``separator``, one
value in the middle whose eight bytes hold LUTE's separator ``;;;`` (as 72 MB of LUTE's random
arrays almost always do). After the last ``clear_communicator()`` it prints ``handed over``
and waits for stdin to close, so that a test can kill it right there.
"""

import sys

import numpy

SIZE = 9_000_000
SEPARATOR_VALUE = numpy.frombuffer(b";;;\x00\x00\x00\xe0?", dtype="<f8")[0]
"""0.5000000004309649: a float64 whose bytes hold ``;;;``."""


def arrays(kind: str) -> list:
    out = []
    for _ in range(2):
        array = numpy.full(SIZE, 0.5)
        if kind == "separator":
            array[SIZE // 2] = SEPARATOR_VALUE
        out.append(array)
    return out


def main() -> None:
    impl, kind = sys.argv[1], sys.argv[2]
    if impl == "lute":
        from lute.execution.ipc import Message, SocketCommunicator
    else:
        from lute_ipc import Message, SocketCommunicator
    for array, signal in zip(arrays(kind), (None, "TASK_RESULT")):
        comm = SocketCommunicator()
        comm.delayed_setup()
        comm.write(Message(contents=array, signal=signal))
        comm.clear_communicator()
    print("handed over", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
