"""LUTE itself on lute_ipc: LUTE's ``run_task`` with LUTE's own Tasks, in every mix of versions.

Each cell runs LUTE 0.3.0's entry point (``run_task -c <config> -t <managed Task>``) as a user
would, in a fresh work directory, and asserts what LUTE itself reports: the exit code, the
Task's status, summary and result payload as LUTE stored them in its database
(``<work_dir>/lute.db``), the lines its Executor logged, and that its "Assume COMPLETED"
fallback was not needed.

Mixes (``LUTE_IPC_SHIM``, read by the ``.pth`` hook of ``python -m lute_ipc lute-shim install``):
lute_ipc on both sides; a lute_ipc Executor with LUTE Tasks (``executor``; on TCP with
``LUTE_IPC_REQUIRE_AUTH=0`` and ``LUTE_IPC_ALLOW=lute``, as docs/MIGRATION.md says); a LUTE
Executor with lute_ipc Tasks (``task``); and LUTE on both sides as the reference for the two
shutdown cases and the 72 MB result. Transports: Unix/TCP x ZeroMQ/raw (``LUTE_USE_TCP``, ``LUTE_USE_ZMQ``).

Runs only where LUTE is installed *with its dependencies* and the switch is installed in this
interpreter's environment (``.ci/run``'s LUTE section makes such a virtualenv); skips
otherwise. Cells run in parallel threads (``LUTE_IPC_MATRIX_JOBS``, default 4), each LUTE run
in its own process group, bounded in time.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from lute_ipc import lute_shim

from .manager import RUNNING, Manager

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.lute

RUN_TIMEOUT = float(os.environ.get("LUTE_IPC_MATRIX_RUN_TIMEOUT", "240"))
"""Seconds one LUTE run may take before its process group is killed."""

MIXES: Dict[str, str] = {
    "both-lute_ipc": "1",
    "lute_ipc-executor+LUTE-task": "executor",
    "LUTE-executor+lute_ipc-task": "task",
}
"""Cell mix -> LUTE_IPC_SHIM of the LUTE run (the Executor's process; its Tasks inherit)."""
REFERENCE = {"both-LUTE": "0"}
"""LUTE's own IPC on both sides: the reference behaviour of the shutdown cases."""

TRANSPORTS: Dict[str, Dict[str, str]] = {
    "unix-zmq": {},  # LUTE 0.3.0: ZeroMQ when LUTE_USE_ZMQ is unset (setting it to 1 breaks LUTE itself)
    "unix-raw": {"LUTE_USE_ZMQ": "0"},
    "tcp-raw": {"LUTE_USE_TCP": "1", "LUTE_USE_ZMQ": "0"},
    "tcp-zmq": {"LUTE_USE_TCP": "1"},
}

MIXED_TCP_ENV = {"LUTE_IPC_REQUIRE_AUTH": "0", "LUTE_IPC_ALLOW": "lute"}
"""What a lute_ipc Executor serving LUTE Tasks over TCP needs (LUTE Tasks cannot sign)."""


# --------------------------------------------------------------------------- one LUTE run
@dataclass
class Run:
    """What LUTE reported for one ``run_task``."""

    managed_task: str
    returncode: int
    log: str
    seconds: float
    results: Dict[str, Tuple[str, str, int, bytes]] = field(default_factory=dict)
    """Task name -> (status, summary, payload length, payload head), from LUTE's database."""

    def result(self, task: str) -> Tuple[str, str, int, bytes]:
        if task not in self.results:
            raise AssertionError(f"LUTE recorded no result for {task} (run_task exit code {self.returncode})")
        return self.results[task]


def _read_results(db: Path) -> Dict[str, Tuple[str, str, int, bytes]]:
    if not db.is_file():
        return {}
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT t.name, r.status, r.summary, length(r.payload), substr(r.payload, 1, 200) "
            "FROM executions e JOIN tasks t ON e.task_id = t.id JOIN results r ON e.result_id = r.id "
            "ORDER BY e.id").fetchall()
    out = {}
    for name, status, summary, size, head in rows:
        head = head if isinstance(head, bytes) else str(head).encode()
        out[name] = (str(status), str(summary), int(size or 0), head)
    return out


def _config(work: Path, timeout: int) -> Path:
    binary = work / "print_after_result"
    binary.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "print_after_result.py"}" "$@"\n')
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    text = (HERE / "matrix.yaml").read_text()
    text = text.replace("@WORK_DIR@", str(work)).replace("@TIMEOUT@", str(timeout)).replace("@BINARY@", str(binary))
    path = work / f"matrix_{timeout}.yaml"
    path.write_text(text)
    return path


def _env(shim: str, transport: str, manager_url: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_") and k != "PYTHONPATH"}
    env.update(TRANSPORTS[transport])
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # run_task, subprocess_task of this environment
    env[lute_shim.SHIM_ENV] = shim
    if shim == "executor" and "LUTE_USE_TCP" in env:
        env.update(MIXED_TCP_ENV)
    env["LUTE_MANAGER_URL"] = manager_url
    env["LUTE_MAESTRO_HEARTBEAT"] = "5"  # a Task that hangs is declared UNRESPONSIVE after
    env["LUTE_NO_HEARTBEAT_KILL"] = "30"  # 30 s instead of LUTE's 900 s
    return env


def run_lute(managed_task: str, shim: str, transport: str, work: Path, manager_url: str,
             timeout: int = 600) -> Run:
    """``run_task -c <config> -t <managed_task>`` in ``work``; LUTE's report of it."""
    config = _config(work, timeout)
    log_path = work / f"{managed_task}.log"
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(BIN / "run_task"), "-c", str(config), "-t", managed_task], cwd=work,
                                env=_env(shim, transport, manager_url), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
            log.write(f"\n[matrix] killed after {RUN_TIMEOUT:.0f} s\n".encode())
    return Run(managed_task, code, log_path.read_text(errors="replace"), time.monotonic() - start,
               _read_results(work / "lute.db"))


# --------------------------------------------------------------------------- scenarios
def _completed(run: Run, task: str, summary: str) -> Tuple[str, str, int, bytes]:
    """LUTE reports the Task COMPLETED with ``summary``, exit code 0, without its fallback guess."""
    assert "Assume COMPLETED" not in run.log, "LUTE had to assume COMPLETED: the Task's result never arrived"
    status, got_summary, size, head = run.result(task)
    assert (status, got_summary) == ("TaskStatus.COMPLETED", summary), (status, got_summary)
    assert run.returncode == 0, f"run_task exit code {run.returncode}"
    return status, got_summary, size, head


def check_tester(runs: List[Run]) -> None:
    run = runs[0]
    _completed(run, "Test", "Test Finished.")
    missing = [i for i in range(10) if f"Test message {i}" not in run.log]
    assert not missing, f"pipe messages lost: {missing}"


def check_socket(runs: List[Run]) -> None:
    _, _, size, _ = _completed(runs[0], "TestSocket", "Sent 1 arrays")
    assert size == 9_000_000 * 8, f"result payload of {size} bytes, expected 72,000,000"


def check_write_read(runs: List[Run]) -> None:
    _, _, _, head = _completed(runs[0], "TestWriteOutput", "Completed task successfully.")
    assert head.endswith(b"matrix_output.txt"), head
    _completed(runs[1], "TestReadOutput", "Was able to load data.")
    assert "Successfully loaded data!" in runs[1].log


def check_request(runs: List[Run]) -> None:
    run = runs[0]
    _completed(run, "TestRequest", "Was able to request via workflow manager..")
    names = ",".join(t["name"] for t in RUNNING["managed_tasks"])
    acknowledged = run.log.count("TestRequest acknowledges that 2 Tasks are running")
    assert acknowledged == 3 and f"Their names are: {names}" in run.log, \
        f"{acknowledged} of 3 replies of the workflow manager reached the Task"


def check_print_after(runs: List[Run]) -> None:
    run = runs[0]
    _completed(run, "TestBinary", "binary result")
    for line in ("printed after TASK_RESULT", "last words after TASK_RESULT"):
        assert line in run.log, f"output written after TASK_RESULT was lost: {line!r}"


def check_timeout(runs: List[Run]) -> None:
    """task_timeout 3 s on the 10 s Tester: LUTE's Executor signals the Task (its handler does
    nothing in 0.3.0), then its final read waits for the Task's end: the Task finishes."""
    run = runs[0]
    assert "Task timed out!" in run.log
    _completed(run, "Test", "Test Finished.")
    assert "Test message 9" in run.log, "the Task's output after the timeout was lost"


def check_timeout_lute_reader(runs: List[Run]) -> None:
    """The timeout run read by LUTE's own PipeCommunicator: LUTE's final read unpickles only the
    first object it gets, so the later pipe messages are LUTE's loss; the rest must hold."""
    run = runs[0]
    assert "Task timed out!" in run.log
    _completed(run, "Test", "Test Finished.")
    lost = [i for i in range(10) if f"Test message {i}" not in run.log]
    print(f"{run.managed_task} read by LUTE's own pipe reader: Test messages lost by it: {lost or 'none'}")


def check_lute_raw_reader_72mb(runs: List[Run]) -> None:
    """A 72 MB result into LUTE's own raw-socket Executor: LUTE's reader appends each 8 KiB it
    receives to a bytes object (quadratic) and its own Task gives up after 10 ms on a blocked
    send (``TimeoutError``: FAILED); a lute_ipc Task waits instead, until LUTE's heartbeat limit
    declares it UNRESPONSIVE. LUTE's limit, whichever Task: the result is not delivered."""
    run = runs[0]
    status = run.result("TestSocket")[0]
    assert status in ("TaskStatus.FAILED", "TaskStatus.UNRESPONSIVE"), \
        f"{status}: LUTE's raw-socket Executor took a 72 MB result (update this expectation and MIGRATION.md)"


def check_lute_task_raw_72mb(runs: List[Run]) -> None:
    """LUTE's own Task sending a 72 MB result over raw sockets: its socket has a 10 ms timeout,
    so it gives up (``TimeoutError``: FAILED) whenever one send waits longer, whoever reads
    (LUTE's own Executor too: ``check_lute_raw_reader_72mb``). The result arrives whole, or the
    Task failed mid-send and the lute_ipc Executor reported the cut frame; never a silent loss
    nor a wrong value."""
    run = runs[0]
    status = run.result("TestSocket")[0]
    if status == "TaskStatus.COMPLETED":
        check_socket(runs)
        return
    assert status == "TaskStatus.FAILED", f"{status}: expected COMPLETED, or FAILED by LUTE's 10 ms send timeout"
    assert "TruncatedFrame" in run.log, "the Task failed but the Executor did not report a cut frame"
    print(f"{run.managed_task}: LUTE's Task gave up mid-send (its 10 ms socket timeout); the cut frame was reported")


class LuteLostResult(AssertionError):
    """LUTE's ZeroMQ Executor lost a 72 MB result that the Task handed over whole (the matrix's
    expected failure; the proof is in ``test_lute_zmq_72mb.py``)."""


LUTE_ZMQ_72MB_REASON = (
    "LUTE's ZeroMQ Executor loses SocketTester's 72 MB result, whoever the Task is: its decoder splits a "
    "frame on every ';;;', which 72 MB of random float64 hold in about 97 runs of 100, and then keeps that "
    "frame, and every later one, unfinished for ever; proof: test_lute_zmq_72mb.py (every byte reaches "
    "LUTE's socket even when the Task is killed right after its last clear_communicator(); LUTE's own "
    "Executor delivers none of a payload holding ';;;', from LUTE's Task as from lute_ipc's). Without ';;;' "
    "its final read can still miss a result that arrived whole before the Task exited (it does not wait "
    "for its reader thread). docs/MIGRATION.md: use a lute_ipc Executor")


def check_lute_zmq_reader_72mb(runs: List[Run]) -> None:
    """A 72 MB result into LUTE's own ZeroMQ Executor (LUTE_ZMQ_72MB_REASON). What the Task
    side controls must hold: the Task ran to its end (exit code 0: ZeroMQ handed everything
    over, or the lute_ipc Task would have raised TransportError), its pipe messages arrived.
    Then LUTE either recorded the result (its random arrays happened to hold no ``;;;`` and its
    final read was late enough) or lost it the known way (``Assume COMPLETED``, nothing else):
    LuteLostResult, the expected failure. Any other outcome fails the cell."""
    run = runs[0]
    assert run.returncode == 0, f"run_task exit code {run.returncode}"
    assert "Task failed with return code" not in run.log, "the Task itself failed"
    assert "TransportError" not in run.log and "Traceback" not in run.log, "the Task reported an error"
    assert "Sending array 0" in run.log, "the Task's pipe message was lost"
    status, _, size, _ = run.result("TestSocket")
    if "Assume COMPLETED" not in run.log:
        check_socket(runs)  # LUTE decoded it: the whole result, COMPLETED
        return
    assert status == "TaskStatus.COMPLETED" and size == 0, (status, size)
    raise LuteLostResult(f"{run.managed_task}: LUTE's Executor assumed COMPLETED without the result")


@dataclass(frozen=True)
class Scenario:
    runs: Tuple[Tuple[str, int], ...]
    """(managed Task, task_timeout) per run_task, in order, in one work directory."""
    check: Callable[[List[Run]], None]


SCENARIOS: Dict[str, Scenario] = {
    "Tester": Scenario((("Tester", 600),), check_tester),
    "SocketTester-72MB": Scenario((("SocketTester", 600),), check_socket),
    "WriteTester+ReadTester": Scenario((("WriteTester", 600), ("ReadTester", 600)), check_write_read),
    "RequestTester": Scenario((("RequestTester", 600),), check_request),
    "print-after-result": Scenario((("BinaryTester", 600),), check_print_after),
    "timeout": Scenario((("Tester", 3),), check_timeout),
}

CELLS: List[Tuple[str, str, str]] = [(mix, transport, scenario) for mix in MIXES for transport in TRANSPORTS
                                     for scenario in SCENARIOS]
CELLS += [(mix, "unix-zmq", scenario) for mix in REFERENCE for scenario in ("print-after-result", "timeout")]
CELLS += [(mix, transport, "SocketTester-72MB") for mix in REFERENCE
          for transport in ("unix-raw", "unix-zmq", "tcp-zmq")]


# --------------------------------------------------------------------------- why a cell fails
DIAGNOSES: List[Tuple[str, str]] = [
    ("LUTE_IPC_KEY is not set", "the lute_ipc Task demands a key although its Executor is LUTE's: needs the "
     "transport's LUTE wire mode (no LUTE_IPC_PROTOCOL -> LUTE's unsigned frames; issue 14)"),
    ("Task Request improperly formatted", "LUTE's Executor got lute_ipc class paths: needs the transport's LUTE "
     "wire mode (LUTE class paths to a LUTE Executor; issue 14)"),
    ("Got metadata signal without metadata message", "LUTE's Executor got lute_ipc class paths (issue 14)"),
    ("not on the allow-list", "the restricted unpickler refused LUTE's classes: needs LUTE_IPC_ALLOW=lute "
     "(issue 17)"),
    ("LUTE-IPC-END", "the padding message of the old ZeroMQ writer reached LUTE's decoder (issue 14)"),
    ("Assume COMPLETED", "the TASK_RESULT never reached LUTE's Executor"),
]


def diagnose(runs: List[Run], scenario: str) -> str:
    found = [why for needle, why in DIAGNOSES if any(needle in run.log for run in runs)]
    lute_ipc_executor = "lute_ipc transport." in runs[0].log
    if lute_ipc_executor and "Will use TCP" in runs[0].log and any("UNRESPONSIVE" in run.log for run in runs):
        found.append("the lute_ipc Executor never got TASK_STARTED (LUTE's unsigned TCP frames rejected): needs "
                     "LUTE_IPC_REQUIRE_AUTH=0 honoured by the transport (issue 14) and LUTE_IPC_ALLOW (issue 17)")
    lute_zmq_executor = "(ZMQ)." in runs[0].log and not lute_ipc_executor  # LUTE's own "Will use ... (ZMQ)."
    result_lost = any("Assume COMPLETED" in run.log or "TaskStatus.COMPLETED" not in run.log for run in runs)
    if lute_zmq_executor and result_lost:
        found.append("LUTE's ZeroMQ Executor dropped the TASK_RESULT: something before it left LUTE's decoder with "
                     "an unfinished message (a payload holding ';;;', or anything that is not LUTE's frame)")
    if scenario == "SocketTester-72MB" and any("Assume COMPLETED" in run.log or run.returncode for run in runs):
        found.append("the 72 MB result did not arrive whole: the frame limit (LUTE_IPC_MAX_FRAME_SIZE) must be "
                     "the same on both sides; LUTE's own Executor: see LUTE_ZMQ_72MB_REASON")
    tails = "\n".join(f"--- {run.managed_task}: exit {run.returncode}, {run.seconds:.1f} s, last lines:\n"
                      + "\n".join(run.log.splitlines()[-12:]) for run in runs)
    return ("diagnosis: " + "; ".join(found) if found else "diagnosis: none of the known signatures") + "\n" + tails


# --------------------------------------------------------------------------- fixtures
def _full_lute_installed() -> Optional[str]:
    """None when LUTE runs here with its dependencies and the switch is installed; else why not."""
    probe = subprocess.run([sys.executable, "-c", "import lute.execution.executor"], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, LUTE_IPC_SHIM="0"))
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"LUTE (lute-lcls==0.3.0 with its dependencies) does not run here: {last}"
    if not (BIN / "run_task").exists():
        return f"LUTE's run_task is not in {BIN}"
    if not lute_shim.status()["installed"]:
        return ("the LUTE switch is not installed in this environment ('python -m lute_ipc lute-shim install'; "
                ".ci/run's LUTE section runs the matrix in such a virtualenv)")
    return None


@pytest.fixture(scope="session")
def matrix(request: pytest.FixtureRequest) -> Iterator[Dict[Tuple[str, str, str], "Future[List[Run]]"]]:
    """Starts every selected cell at once (a thread pool), one future per cell."""
    reason = _full_lute_installed()
    if reason and os.environ.get("LUTE_IPC_MATRIX_REQUIRED"):
        pytest.fail(f"LUTE_IPC_MATRIX_REQUIRED is set but the matrix cannot run: {reason}")
    if reason:
        pytest.skip(reason)
    wanted = [item.callspec.params["cell"] for item in request.session.items
              if hasattr(item, "callspec") and "cell" in item.callspec.params]
    shims = {**MIXES, **REFERENCE}
    weight = {"Tester": 60, "SocketTester": 40}  # longest first: the pool ends together
    order = sorted(set(wanted), key=lambda c: -sum(weight.get(t, 10) for t, _ in SCENARIOS[c[2]].runs))
    jobs = int(os.environ.get("LUTE_IPC_MATRIX_JOBS", "4"))
    # Its own directory (not pytest's shared basetemp): a 72 MB database per SocketTester cell is
    # removed as soon as LUTE's report is read, the logs stay with LUTE_IPC_MATRIX_KEEP=1.
    keep = bool(os.environ.get("LUTE_IPC_MATRIX_KEEP"))
    base = Path(tempfile.mkdtemp(prefix="lute_ipc-matrix-"))
    with Manager() as manager, ThreadPoolExecutor(max_workers=jobs) as pool:
        def job(cell: Tuple[str, str, str]) -> List[Run]:
            work = base / "-".join(cell).replace("+", "_")
            work.mkdir()
            try:
                return [run_lute(task, shims[cell[0]], cell[1], work, manager.url, timeout)
                        for task, timeout in SCENARIOS[cell[2]].runs]
            finally:
                if not keep:
                    shutil.rmtree(work, ignore_errors=True)

        yield {cell: pool.submit(job, cell) for cell in order}
    if keep:
        print(f"LUTE matrix work directories and logs: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


def _lute_zmq_reads_72mb(cell: Tuple[str, str, str]) -> bool:
    lute_reads = cell[0] in REFERENCE or MIXES.get(cell[0]) == "task"  # LUTE's own Executor-side IPC
    return lute_reads and cell[1].endswith("-zmq") and cell[2] == "SocketTester-72MB"


# Not strict: LUTE takes the result in the rare run whose random arrays hold no ';;;' (XPASS).
# raises=: any other failure of these cells (the Task failed, an error) is a real failure.
_LUTE_ZMQ_72MB = pytest.mark.xfail(raises=LuteLostResult, strict=False, reason=LUTE_ZMQ_72MB_REASON)


def _marks(cell: Tuple[str, str, str]) -> List[Any]:
    if _lute_zmq_reads_72mb(cell):
        return [_LUTE_ZMQ_72MB]
    return []


@pytest.mark.parametrize("cell", [pytest.param(c, id="/".join(c), marks=_marks(c)) for c in CELLS])
def test_lute_cell(matrix: Dict[Tuple[str, str, str], "Future[List[Run]]"], cell: Tuple[str, str, str]) -> None:
    runs = matrix[cell].result()
    check = SCENARIOS[cell[2]].check
    lute_reads = cell[0] in REFERENCE or MIXES.get(cell[0]) == "task"  # LUTE's own Executor-side IPC
    if lute_reads and cell[2] == "timeout":
        check = check_timeout_lute_reader
    if lute_reads and cell[1].endswith("-raw") and cell[2] == "SocketTester-72MB":
        check = check_lute_raw_reader_72mb
    elif _lute_zmq_reads_72mb(cell):
        check = check_lute_zmq_reader_72mb
    elif MIXES.get(cell[0]) == "executor" and cell[1].endswith("-raw") and cell[2] == "SocketTester-72MB":
        check = check_lute_task_raw_72mb
    try:
        check(runs)
    except LuteLostResult:
        raise
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(runs, cell[2])}") from None
