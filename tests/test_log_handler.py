"""SocketLogHandler: records from a Task reach the Executor over one connection, none lost, in order."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator, List, Tuple

import pytest

from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc.errors import ConfigurationError
from lute_ipc.log_handler import SocketLogHandler, log_record_from_contents
from tests.socket_tasks.helpers import clear_lute_env

from .usage_tasks.common import TRANSPORTS, child_env, read_until, read_until_quiet, start, use_tcp

RECORD = "record %d with ;;; and ;;;GSM inside"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_lute_env(monkeypatch)


@pytest.fixture
def raw_executor(clean_env: None) -> Iterator[SocketCommunicator]:
    """An Executor on a raw Unix socket whose queue holds one message: a slow Executor when not read."""
    with SocketCommunicator(Party.EXECUTOR, use_zmq=False, queue_size=1) as comm:
        comm.delayed_setup()
        yield comm


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


@contextmanager
def _task_run(monkeypatch: pytest.MonkeyPatch, transport: Tuple[bool, bool], script: str, arg: int,
              count: int) -> Iterator[Tuple[SocketCommunicator, List[Message]]]:
    """An Executor on ``transport`` (use_zmq, tcp) and the Task ``tests/usage_tasks/<script> <arg>``
    run to its end (exit code 0): the Executor, still open, and the first ``count`` messages or more."""
    use_zmq, tcp = transport
    use_tcp(monkeypatch, tcp)
    with SocketCommunicator(Party.EXECUTOR, use_zmq=use_zmq) as executor:
        executor.delayed_setup()
        proc = start(script, arg, env=child_env(use_zmq=use_zmq))
        got = read_until(executor, lambda msgs: len(msgs) >= count)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
        yield executor, got


def _task_side(use_zmq: bool = False) -> SocketCommunicator:
    comm = SocketCommunicator(Party.TASK, use_zmq=use_zmq)
    comm.delayed_setup()
    return comm


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_10k_records_from_a_task_process_none_lost_in_order(monkeypatch: pytest.MonkeyPatch, clean_env: None,
                                                            transport: tuple) -> None:
    count = 10_000
    with _task_run(monkeypatch, transport, "log_task.py", count, count) as (executor, got):
        got.extend(executor.read_many(100, wait=0.2))  # nothing more may come
        assert [m.signal for m in got] == ["TASK_LOG"] * count
        assert [m.contents for m in got] == [RECORD % i for i in range(count)]
        if not transport[0]:  # raw sockets
            assert executor.stats.connections_accepted == 1  # one persistent connection
        assert executor.stats.framing_errors == 0


def test_structured_records_rebuild_a_log_record(raw_executor: SocketCommunicator) -> None:
    task = _task_side()
    handler = SocketLogHandler(communicator=task, structured=True)
    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    logger = _logger(handler, "usage.structured")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.warning("it failed: %s", "details", exc_info=True)
    handler.close()
    task.close()
    (msg,) = read_until(raw_executor, lambda msgs: len(msgs) >= 1)
    fields = msg.contents
    assert msg.signal == "TASK_LOG"
    assert fields["levelname"] == "WARNING" and fields["name"] == "usage.structured"
    assert fields["message"] == "it failed: details"
    assert fields["formatted"].startswith("WARNING|it failed: details")
    assert "ValueError: boom" in fields["exc_text"]
    assert fields["funcName"] == "test_structured_records_rebuild_a_log_record"
    record = log_record_from_contents(fields)
    assert record.levelno == logging.WARNING and record.getMessage() == "it failed: details"
    assert record.name == "usage.structured"
    text = log_record_from_contents("TASK_LOG -- INFO:x: hello")
    assert text.levelno == logging.INFO and text.getMessage() == "TASK_LOG -- INFO:x: hello"


def test_close_delivers_everything_buffered(raw_executor: SocketCommunicator) -> None:
    task = _task_side()
    handler = SocketLogHandler(communicator=task, capacity=100_000)
    logger = _logger(handler, "usage.close")
    for i in range(3000):
        logger.info(RECORD, i)
    # The Executor is slow (queue of 1, nobody reading yet): close must wait and deliver.
    got: List[Message] = []
    import threading

    closer = threading.Thread(target=handler.close)
    closer.start()
    got = read_until(raw_executor, lambda msgs: len(msgs) >= 3000)
    closer.join(10)
    assert not closer.is_alive()
    task.close()
    assert [m.contents for m in got] == [RECORD % i for i in range(3000)]
    assert handler.sent == 3000 and handler.dropped == 0 and handler.spilled == 0


def test_drop_when_full_counts_drops_and_tells_the_executor(raw_executor: SocketCommunicator) -> None:
    task = _task_side()
    handler = SocketLogHandler(communicator=task, capacity=16, drop_when_full=True)
    logger = _logger(handler, "usage.drop")
    filler = "x" * 1000
    total = 3000
    for i in range(total):  # never blocks although the Executor reads nothing
        logger.info("%d %s", i, filler)
    assert handler.dropped > 0
    assert handler.dropped + handler.sent + handler.buffered == total
    done = {"closed": False}
    import threading

    def close() -> None:
        handler.close()
        task.close()
        done["closed"] = True

    closer = threading.Thread(target=close)
    closer.start()
    got = read_until(raw_executor, lambda msgs: done["closed"], timeout=30)
    got += read_until_quiet(raw_executor)
    closer.join(10)
    data = [int(m.contents.split()[0]) for m in got if m.contents.endswith(filler)]
    notices = [m.contents for m in got if "dropped" in m.contents]
    assert data == sorted(data) and len(set(data)) == len(data)  # order kept
    reported = sum(int(re.search(r"(\d+) log record\(s\) dropped", n).group(1)) for n in notices)
    assert reported == handler.dropped
    assert len(data) + handler.dropped == total  # every record either delivered or counted
    assert handler.spilled == 0


def test_full_buffer_blocks_then_spills_never_silently(raw_executor: SocketCommunicator) -> None:
    task = _task_side()
    fallback = io.StringIO()
    handler = SocketLogHandler(communicator=task, capacity=8, block_timeout=0.005, fallback=fallback)
    logger = _logger(handler, "usage.spill")
    filler = "y" * 4000
    total = 400
    for i in range(total):
        logger.info("%d %s", i, filler)
    assert handler.spilled > 0 and handler.dropped == 0
    import threading

    closer = threading.Thread(target=handler.close)
    closer.start()
    got = read_until(raw_executor, lambda msgs: not closer.is_alive())
    got += read_until_quiet(raw_executor)
    closer.join(10)
    task.close()
    delivered = [int(m.contents.split()[0]) for m in got]
    lines = fallback.getvalue().splitlines()
    assert "writing log records here because the buffer stayed full" in lines[0]
    spilled = [int(line.split()[0]) for line in lines[1:]]
    assert len(spilled) == handler.spilled
    assert sorted(delivered + spilled) == list(range(total))  # none lost
    assert delivered == sorted(delivered)


def test_emit_after_close_goes_to_the_fallback(raw_executor: SocketCommunicator) -> None:
    task = _task_side()
    fallback = io.StringIO()
    handler = SocketLogHandler(communicator=task, fallback=fallback)
    logger = _logger(handler, "usage.after_close")
    handler.close()
    handler.close()  # idempotent
    logger.error("late record")
    task.close()
    assert handler.spilled == 1
    assert fallback.getvalue().splitlines()[-1] == "late record"


def test_missing_environment_is_a_configuration_error(clean_env: None) -> None:
    with pytest.raises(ConfigurationError, match="LUTE_EXECUTOR_HOST"):
        SocketLogHandler()


def test_bad_options_are_usage_errors(clean_env: None) -> None:
    from lute_ipc.errors import UsageError

    with pytest.raises(UsageError):
        SocketLogHandler(capacity=0, communicator=object())  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        SocketLogHandler(block_timeout=-1, communicator=object())  # type: ignore[arg-type]


def test_a_record_logged_by_the_drain_thread_does_not_deadlock(raw_executor: SocketCommunicator) -> None:
    """The transport may log (e.g. a reconnect warning) from the drain thread, through the root
    logger and back into this handler: that must neither deadlock flush() nor be lost."""
    task = _task_side()
    original_write = task.write
    logger = logging.getLogger("usage.reentrant")

    def noisy_write(msg: Message, proc: object = None) -> None:
        if msg.contents == "trigger":
            logger.warning("logged from the drain thread")
        original_write(msg)

    task.write = noisy_write  # type: ignore[method-assign]
    handler = SocketLogHandler(communicator=task)
    _logger(handler, "usage.reentrant")
    logger.info("trigger")
    got = read_until(raw_executor, lambda msgs: len(msgs) >= 2, timeout=10)
    handler.close()
    task.close()
    assert [m.contents for m in got] == ["trigger", "logged from the drain thread"]


def test_close_with_a_stalled_executor_reports_what_it_could_not_deliver(raw_executor: SocketCommunicator) -> None:
    """The Executor never reads: close() gives up after close_timeout, spills the buffer and says
    how many records were stuck in the transport. Nothing disappears without a word."""
    task = _task_side()
    fallback = io.StringIO()
    handler = SocketLogHandler(communicator=task, capacity=100_000, close_timeout=0.5, fallback=fallback)
    logger = _logger(handler, "usage.stalled")
    filler = "s" * 4000
    total = 1000  # 4 MB: far more than the socket buffers hold
    for i in range(total):
        logger.info("%d %s", i, filler)
    handler.close()
    text = fallback.getvalue()
    spilled = [line for line in text.splitlines() if line.endswith(filler)]
    assert len(spilled) == handler.spilled > 0
    stuck = re.search(r"(\d+) log record\(s\) were being sent", text)
    assert stuck is not None
    # the rest reaches the Executor once it reads: sent + stuck + spilled account for everything
    assert handler.sent + int(stuck.group(1)) + handler.spilled == total
    got = read_until_quiet(raw_executor, quiet=0.5)
    task.close()
    assert len(got) >= handler.sent


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_flushed_record_arrives_before_a_later_report(monkeypatch: pytest.MonkeyPatch, clean_env: None,
                                                        transport: tuple) -> None:
    """flush() pushes the record out of the handler's link, so it reaches the Executor before a
    TASK_RESULT reported afterwards through the Task's other connection. Repeated: it was a race."""
    rounds = 200
    with _task_run(monkeypatch, transport, "flush_order_task.py", rounds, 2 * rounds) as (_, got):
        pass
    order = [f"log {m.contents.split()[-1]}" if m.signal == "TASK_LOG" else f"result {m.contents['round']}"
             for m in got]
    late = [i for i in range(rounds) if order.index(f"log {i}") > order.index(f"result {i}")]
    assert not late, f"{len(late)} of {rounds} flushed records arrived after the next report: rounds {late[:10]}"


_FAILING_CONSTRUCTOR = """
import logging
from lute_ipc.errors import ConfigurationError
from lute_ipc.log_handler import SocketLogHandler
logging.basicConfig(level=logging.INFO)
try:
    SocketLogHandler()
except ConfigurationError as exc:
    kept = exc  # its traceback keeps the constructor's frame (and self) alive until exit
    print("refused:", exc)
logging.info("still logging")
"""


@pytest.mark.parametrize("caught", [True, False], ids=["caught", "uncaught"])
def test_a_failing_constructor_leaves_no_half_built_handler(clean_env: None, caught: bool) -> None:
    """No LUTE environment: the constructor raises ConfigurationError, and nothing half-built is
    left registered for logging.shutdown() to trip over at exit."""
    code = _FAILING_CONSTRUCTOR if caught else "from lute_ipc.log_handler import SocketLogHandler\nSocketLogHandler()\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("LUTE_")
                               or k == "LUTE_IPC_PURE_PYTHON"})
    if caught:
        assert proc.returncode == 0 and proc.stdout.startswith("refused:"), proc.stderr
        assert proc.stderr == "INFO:root:still logging\n"
    else:
        assert proc.returncode == 1
        assert proc.stderr.rstrip().splitlines()[-1].startswith("lute_ipc.errors.ConfigurationError")
    assert "AttributeError" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
