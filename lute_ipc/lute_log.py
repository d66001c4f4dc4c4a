"""The Executor's transport log lines, in the shape LUTE users know from ``lute.execution.ipc``.

LUTE's Executor logs which transport it chose (``Will use ... (ZMQ)``), where it listens and
when its socket reader stops; scripts and eyes look for those lines. lute_ipc's Executor logs
an equivalent of each, at INFO, on :func:`transport_logger`: LUTE's own logger name
(``lute.execution.ipc``) while the LUTE switch is active (:mod:`lute_ipc.lute_shim`), so a
LUTE log configuration shows them where it showed LUTE's; ``lute_ipc.sockets`` otherwise.
"""

from __future__ import annotations

import logging
from typing import Optional

__all__ = ["LUTE_LOGGER", "OWN_LOGGER", "transport_logger", "executor_ready", "reader_stopped"]

LUTE_LOGGER = "lute.execution.ipc"
OWN_LOGGER = "lute_ipc.sockets"


def transport_logger() -> logging.Logger:
    """LUTE's logger when lute_ipc serves ``lute.execution.ipc`` in this process, else lute_ipc's."""
    from .lute_shim import is_active

    return logging.getLogger(LUTE_LOGGER if is_active() else OWN_LOGGER)


def executor_ready(use_zmq: bool, use_tcp: bool, address: Optional[str]) -> None:
    """Two INFO lines once the Executor's socket is bound: the transport, then the address."""
    log = transport_logger()
    where = "TCP" if use_tcp else "Unix sockets"
    engine = "ZMQ" if use_zmq else "raw sockets"
    log.info("Will use %s (%s), lute_ipc transport.", where, engine)
    if use_tcp:
        port = address.rsplit(":", 1)[-1] if address else "?"
        log.info("Executor listening on TCP port %s (%s).", port, address)
    else:
        log.info("Executor socket path: %s", address)


def reader_stopped() -> None:
    """One INFO line when the Executor's socket reader thread has stopped."""
    transport_logger().info("Stopped the socket reader thread.")
