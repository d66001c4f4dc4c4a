"""The real LUTE (PyPI ``lute-lcls``), imported for the ``lute-lcls`` contenders without its import side effects.

Importing ``lute.execution.ipc`` configures the root logger at DEBUG, turns warnings on
and captures them into logging, and sets ``PYTHONWARNINGS``. A benchmark process must not
print LUTE's debug lines nor slow down logging the others' messages: :func:`lute_ipc_module`
imports it with a handler already on the root logger (so ``basicConfig`` does nothing),
restores the warning filters and environment, and quiets the ``lute`` loggers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from typing import Any, Optional


def available() -> Optional[str]:
    """None when LUTE can be imported; else why not (nothing is imported)."""
    try:
        found = importlib.util.find_spec("lute.execution.ipc")
    except (ImportError, ValueError) as exc:
        return f"LUTE (lute-lcls) is not importable ({exc})"
    return None if found else "LUTE (lute-lcls) is not installed"


def lute_ipc_module(use_zmq: bool) -> Any:
    """``lute.execution.ipc``, imported quietly, with its ``USE_ZMQ`` switch set to ``use_zmq``."""
    root = logging.getLogger()
    placeholder = None
    if not root.handlers:
        placeholder = logging.NullHandler()
        root.addHandler(placeholder)
    saved_env = os.environ.get("PYTHONWARNINGS")
    try:
        with warnings.catch_warnings():
            from lute.execution import ipc  # untyped, optional: pyproject's mypy overrides
    finally:
        logging.captureWarnings(False)
        if saved_env is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved_env
        if placeholder is not None:
            root.removeHandler(placeholder)
    logging.getLogger("lute").setLevel(logging.ERROR)
    ipc.USE_ZMQ = use_zmq
    return ipc
