"""Request/response between a Task and its Executor (current LUTE's TASK_REQUEST / TASK_RESPONSE).

LUTE (lute-lcls 0.3.0) lets a Task send a :class:`~lute_ipc.message.TaskRequestMessage`
over the socket and wait for the Executor's :class:`~lute_ipc.message.TaskResponseMessage`
on its stdin, with ``PipeCommunicator().read(wait=2)``: it takes whatever arrives first.
:func:`request` does the same and adds what LUTE lacks: the reply is *matched* to the request.

LUTE's own Executor (0.3.0) answers with a plain ``Message(contents=<answer>)`` on stdin, not a
TaskResponseMessage. When the Executor does not advertise the lute_ipc protocol
(``LUTE_IPC_PROTOCOL`` unset: it is LUTE's), a stdin Message *without a signal* answers the
oldest waiting request, as ``TaskResponse(response=<its contents>)``.

Correlation: each request carries an id as an extra instance attribute of its
:class:`TaskRequest` (``_lute_ipc_request_id``). It is not a dataclass field, so a LUTE peer
neither sees it (``repr``, ``==``, ``fields()``) nor needs to know it. :func:`make_response`
copies it into the reply; a reply without an id (from a LUTE Executor) is accepted by the
oldest request waiting. Replies and other stdin messages that belong to no waiting call are
kept, in order, for later calls and for :func:`next_executor_message`: nothing read is lost.

Executor side::

    msg = socket_comm.read()
    if msg.signal == "TASK_REQUEST":
        pipe_comm.write(make_response(msg, ["task-a", "task-b"]), proc)

Task side::

    response = request("RUNNING_TASKS", for_manager=True, timeout=5)
    print(response.response)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from typing import Any, Deque, Dict, List, Optional

from .env import executor_protocol
from .errors import RequestTimeout, UsageError
from .message import Message, TaskRequest, TaskRequestMessage, TaskResponse, TaskResponseMessage

__all__ = ["request", "make_response", "request_id", "next_executor_message", "RequestChannel"]

ID_ATTRIBUTE = "_lute_ipc_request_id"
_POLL = 0.2


def request_id(obj: Any) -> Optional[str]:
    """The correlation id carried by a TaskRequest/TaskResponse (or their Messages), if any."""
    if isinstance(obj, Message):
        obj = obj.contents
    value = getattr(obj, "__dict__", {}).get(ID_ATTRIBUTE)
    return value if isinstance(value, str) else None


def make_response(request_msg: Message, response: Any, *, for_task: Optional[str] = None) -> TaskResponseMessage:
    """Executor side: the reply to ``request_msg`` carrying its correlation id (if it has one)."""
    if not isinstance(request_msg.contents, TaskRequest):
        raise UsageError(
            f"make_response() needs a TaskRequestMessage, not {type(request_msg.contents).__name__} contents")
    reply = TaskResponse(response=response,
                         for_task=for_task if for_task is not None else request_msg.contents.for_task)
    rid = request_id(request_msg)
    if rid is not None:
        setattr(reply, ID_ATTRIBUTE, rid)
    return TaskResponseMessage(contents=reply)


class RequestChannel:
    """Sends requests and matches replies read from the Task's stdin. Thread-safe.

    Args:
        send: how a request Message reaches the Executor (default: :func:`lute_ipc.task.report`).
        stdin: the Task-side PipeCommunicator to read replies from (default: a new one).
    """

    def __init__(self, send: Optional[Any] = None, stdin: Optional[Any] = None) -> None:
        self._send = send
        self._stdin = stdin
        self._lock = threading.Lock()          # one reader of stdin at a time
        self._state = threading.Lock()         # guards the fields below
        self._waiting: List[str] = []          # ids of calls waiting, oldest first
        self._replies: Dict[str, TaskResponse] = {}
        self._anonymous: Deque[TaskResponse] = deque()  # replies without an id
        self._other: Deque[Message] = deque()
        self._lute_executor = executor_protocol() is None  # LUTE's Executor replies with plain Messages

    def request(self, obj: Any, *, for_task: Optional[str] = None, for_manager: bool = False,
                timeout: float = 2.0) -> TaskResponse:
        """Send a TaskRequest for ``obj`` and return the matching TaskResponse.

        Raises:
            RequestTimeout: no matching reply within ``timeout`` seconds.
        """
        if timeout is None or timeout < 0:
            raise UsageError("timeout must be a number of seconds >= 0")
        rid = uuid.uuid4().hex
        req = TaskRequest(request=obj, for_task=for_task, for_manager=for_manager)
        setattr(req, ID_ATTRIBUTE, rid)
        with self._state:
            self._waiting.append(rid)
        try:
            self._sender()(TaskRequestMessage(contents=req))
            deadline = time.monotonic() + timeout
            while True:
                found = self._claim(rid)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeout(f"no reply to request {obj!r} within {timeout} s")
                if self._lock.acquire(timeout=min(remaining, _POLL)):
                    try:
                        self._read_once(min(remaining, _POLL))
                    finally:
                        self._lock.release()
        finally:
            with self._state:
                self._waiting.remove(rid)

    def next_message(self, wait: Optional[float] = None) -> Message:
        """The next stdin Message that is not a reply claimed by a request (empty ``Message()`` if none)."""
        deadline = time.monotonic() + (wait or 0.0)
        while True:
            with self._state:
                if self._other:
                    return self._other.popleft()
            remaining = deadline - time.monotonic()
            with self._lock:
                self._read_once(max(0.0, min(remaining, _POLL)))
            with self._state:
                if self._other:
                    return self._other.popleft()
            if remaining <= 0:
                return Message()

    # ------------------------------------------------------------------ internals
    def _sender(self) -> Any:
        if self._send is None:
            from .task import report

            self._send = report
        return self._send

    def _pipe(self) -> Any:
        if self._stdin is None:
            from .pipe import PipeCommunicator

            self._stdin = PipeCommunicator()
        return self._stdin

    def _claim(self, rid: str) -> Optional[TaskResponse]:
        with self._state:
            if rid in self._replies:
                return self._replies.pop(rid)
            if self._anonymous and self._waiting and self._waiting[0] == rid:
                return self._anonymous.popleft()
        return None

    def _read_once(self, wait: float) -> None:
        msg = self._pipe().read(wait=wait)
        while msg.contents is not None or msg.signal is not None:
            with self._state:
                if self._lute_executor and msg.signal is None and self._waiting \
                        and not isinstance(msg.contents, TaskResponse):
                    self._anonymous.append(TaskResponse(response=msg.contents))
                elif isinstance(msg.contents, TaskResponse):
                    rid = request_id(msg)
                    if rid is not None and rid in self._waiting:
                        self._replies[rid] = msg.contents
                    elif rid is None and self._waiting:
                        self._anonymous.append(msg.contents)
                    else:
                        self._other.append(msg)
                else:
                    self._other.append(msg)
            msg = self._pipe().read()


_channel: Optional[RequestChannel] = None
_channel_lock = threading.Lock()


def _default_channel() -> RequestChannel:
    global _channel
    with _channel_lock:
        if _channel is None:
            _channel = RequestChannel()
        return _channel


def request(obj: Any, *, for_task: Optional[str] = None, for_manager: bool = False,
            timeout: float = 2.0) -> TaskResponse:
    """Task side: send a request to the Executor and return its matching :class:`TaskResponse`.

    The request goes over the process's persistent socket (:func:`lute_ipc.task.report`);
    the reply comes on stdin. Raises :class:`~lute_ipc.errors.RequestTimeout`.
    """
    return _default_channel().request(obj, for_task=for_task, for_manager=for_manager, timeout=timeout)


def next_executor_message(wait: Optional[float] = None) -> Message:
    """Task side: the next message the Executor wrote on stdin that no :func:`request` claimed."""
    return _default_channel().next_message(wait)
