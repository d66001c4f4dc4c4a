"""A lute_ipc Task that asks its Executor questions with lute_ipc.requests.request().

argv[1]: "concurrent" (two threads ask at once) or "timeout" (the Executor does not answer).
Results are reported over the socket as TASK_RESULT messages.
"""
import sys
import threading

from lute_ipc import Message
from lute_ipc.errors import RequestTimeout
from lute_ipc.requests import next_executor_message, request
from lute_ipc.task import close_reporter, report

mode = sys.argv[1]
if mode == "concurrent":
    answers = {}

    def ask(question: str) -> None:
        answers[question] = request(question, for_task="other", timeout=30).response

    threads = [threading.Thread(target=ask, args=(q,)) for q in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report(Message(answers, "TASK_RESULT"))
    report(Message(next_executor_message(wait=10).contents, "TASK_RESULT"))
elif mode == "timeout":
    try:
        request("nobody answers", timeout=0.5)
        report(Message("answered?!", "TASK_RESULT"))
    except RequestTimeout as exc:
        report(Message(f"timeout: {exc}", "TASK_RESULT"))
report(Message(signal="TASK_DONE"))
close_reporter()
