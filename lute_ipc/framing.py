"""Selects the frame codec implementation: the Cython extension, or the pure-Python reference.

The extension ``lute_ipc._framing_c`` is used when it was built, unless the environment
variable ``LUTE_IPC_PURE_PYTHON`` is set to a non-empty value other than ``0``.
``IMPLEMENTATION`` says which one is in use (``"cython"`` or ``"python"``) and
``IMPLEMENTATION_REASON`` why. Everything else in lute_ipc imports the codec from here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = [
    "IMPLEMENTATION",
    "IMPLEMENTATION_REASON",
    "PUBLIC_API",
    "FrameDecoder",
    "encode_frame",
    "encode_payload",
    "append_frame",
    "append_payload",
    "frame_head",
    "message_pieces",
    "MixedStreamSplitter",
    "SignalTokenizer",
    "final_buffer",
    "SendBuffer",
    "PLAIN_HEAD",
    "PLAIN_TRAILER",
    "AUTH_HEAD",
    "AUTH_TRAILER",
    "DEFAULT_MAX_FRAME_SIZE",
]

PUBLIC_API = ("FrameDecoder", "encode_frame", "encode_payload", "append_frame", "append_payload", "frame_head",
              "message_pieces", "MixedStreamSplitter", "SignalTokenizer", "final_buffer",
              "SendBuffer")
"""Names both implementations must export with the same signatures."""


def _pure_requested() -> bool:
    return os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0")


if TYPE_CHECKING or _pure_requested():
    from . import _framing_py as _impl

    IMPLEMENTATION = "python"
    IMPLEMENTATION_REASON = "LUTE_IPC_PURE_PYTHON is set"
else:
    try:
        from . import _framing_c as _impl  # type: ignore[no-redef]

        IMPLEMENTATION = "cython"
        IMPLEMENTATION_REASON = "compiled extension lute_ipc._framing_c loaded"
    except ImportError as _exc:  # not built (no compiler/Cython at install time)
        from . import _framing_py as _impl  # type: ignore[no-redef]

        IMPLEMENTATION = "python"
        IMPLEMENTATION_REASON = f"extension not available ({_exc})"

from ._framing_py import (  # noqa: E402  constants are shared by both twins
    AUTH_HEAD,
    AUTH_TRAILER,
    DEFAULT_MAX_FRAME_SIZE,
    PLAIN_HEAD,
    PLAIN_TRAILER,
)

FrameDecoder = _impl.FrameDecoder
encode_frame = _impl.encode_frame
encode_payload = _impl.encode_payload
append_frame = _impl.append_frame
append_payload = _impl.append_payload
frame_head = _impl.frame_head
message_pieces = _impl.message_pieces
MixedStreamSplitter = _impl.MixedStreamSplitter
SignalTokenizer = _impl.SignalTokenizer
final_buffer = _impl.final_buffer
SendBuffer = _impl.SendBuffer
