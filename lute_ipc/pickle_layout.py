"""Facts about the pickle byte layout, stated once for every part of lute_ipc that reads or writes it.

The codec (:mod:`lute_ipc.codec`), both framing twins (``_framing_py`` and the Cython
``_framing_c``, whose ``.pxi`` units copy these values at import), the pipe splitter's
opcode walker and the writer's out-of-band pickler (:mod:`lute_ipc._oob`) all read their
pickle knowledge from here: protocol numbers, opcode bytes, pickle's frame target, the
size from which buffers travel out of band, LUTE's module name, and the exact byte pieces
of a pickled :class:`~lute_ipc.message.Message`. Changing a fact here changes it everywhere.

Pure data and pure functions: no I/O, nothing changed after import.
"""

from __future__ import annotations

import pickle
from typing import FrozenSet, Tuple, Union

__all__ = [
    "PICKLE_PROTOCOL",
    "HIGHEST_PROTOCOL",
    "MIN_CANDIDATE_PROTOCOL",
    "LEGACY_MODULE",
    "LEGACY_MODULE_BYTES",
    "MIRRORED_NAMES",
    "FRAME_TARGET",
    "LARGE_BUFFER",
    "HEADER_SIZE",
    "MAX_ARGUMENT_LENGTH",
    "PROTO", "FRAME", "STOP", "MEMOIZE", "STACK_GLOBAL", "GLOBAL", "INST", "NONE", "BUILD", "SETITEMS",
    "SHORT_BINUNICODE", "BINUNICODE", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8",
    "MESSAGE_NEWOBJ", "MESSAGE_KEY_CONTENTS", "MESSAGE_KEY_SIGNAL", "MESSAGE_END",
    "short_text",
    "A_BAD", "A_FIXED", "A_LEN", "A_SLEN", "A_LINES", "A_PROTO",
    "S_PLAIN", "S_MARK", "S_POPMARK", "S_POP", "S_STOP",
    "ARG_KIND", "ARG_SIZE", "EFFECT", "POPS", "PUSHES", "BELOW",
]

# --------------------------------------------------------------------------- protocols
PICKLE_PROTOCOL: int = pickle.DEFAULT_PROTOCOL
"""Protocol every lute_ipc writer pickles with: the interpreter's default, as LUTE does."""
HIGHEST_PROTOCOL: int = 5
"""Highest protocol number a PROTO opcode may carry."""
MIN_CANDIDATE_PROTOCOL: int = 2
"""Lowest protocol the pipe splitter recognises as the start of a pickle (``0x80 <proto>``)."""

# --------------------------------------------------------------------------- names
LEGACY_MODULE: str = "lute.execution.ipc"
"""LUTE's module: its classes named in :data:`MIRRORED_NAMES` decode as lute_ipc's own."""
LEGACY_MODULE_BYTES: bytes = LEGACY_MODULE.encode("ascii")
MIRRORED_NAMES: FrozenSet[str] = frozenset(
    {"Party", "Message", "TaskRequest", "TaskResponse", "TaskRequestMessage", "TaskResponseMessage",
     "TaskMetadataMessage"})
"""Names of ``lute.execution.ipc`` that :mod:`lute_ipc.message` mirrors."""

# --------------------------------------------------------------------------- sizes
FRAME_TARGET: int = 64 * 1024
"""pickle's frame target (protocol 4+): a ``bytes`` object of at least this size is written
outside the frames (pickle closes the current frame before it and opens a new one after)."""
LARGE_BUFFER: int = 32 * 1024
"""Buffers of at least this size are sent in place (out of band, scatter-gather) by the
writer, and lent to the unpickler as a memoryview instead of being copied by the readers."""
HEADER_SIZE: int = 11
"""``PROTO <p> FRAME <8-byte length>``: the first bytes of a protocol 4+ pickle."""
MAX_ARGUMENT_LENGTH: int = 2 ** 62
"""An opcode argument announcing more bytes than this breaks the grammar (no pickle is that long)."""

# --------------------------------------------------------------------------- opcodes
PROTO: int = pickle.PROTO[0]
FRAME: int = pickle.FRAME[0]
STOP: int = pickle.STOP[0]
MEMOIZE: int = pickle.MEMOIZE[0]
STACK_GLOBAL: int = pickle.STACK_GLOBAL[0]
GLOBAL: int = pickle.GLOBAL[0]
INST: int = pickle.INST[0]
NONE: int = pickle.NONE[0]
BUILD: int = pickle.BUILD[0]
SETITEMS: int = pickle.SETITEMS[0]
SHORT_BINUNICODE: int = pickle.SHORT_BINUNICODE[0]
BINUNICODE: int = pickle.BINUNICODE[0]
SHORT_BINBYTES: int = pickle.SHORT_BINBYTES[0]
BINBYTES: int = pickle.BINBYTES[0]
BINBYTES8: int = pickle.BINBYTES8[0]
BYTEARRAY8: int = pickle.BYTEARRAY8[0]


def short_text(text: bytes) -> bytes:
    """``SHORT_BINUNICODE <len> <text> MEMOIZE``: how pickle writes a short string it memoizes."""
    return bytes((SHORT_BINUNICODE, len(text))) + text + bytes((MEMOIZE,))


# The pickle of a Message(contents, signal) (protocol 4 and 5 write the same opcodes):
#   PROTO p FRAME n | module, qualname (short_text each) | MESSAGE_NEWOBJ | MESSAGE_KEY_CONTENTS
#   | contents value | MESSAGE_KEY_SIGNAL | signal value | MESSAGE_END
MESSAGE_NEWOBJ: bytes = pickle.STACK_GLOBAL + pickle.MEMOIZE + pickle.EMPTY_TUPLE + pickle.NEWOBJ + pickle.MEMOIZE \
    + pickle.EMPTY_DICT + pickle.MEMOIZE + pickle.MARK
MESSAGE_KEY_CONTENTS: bytes = short_text(b"contents")
MESSAGE_KEY_SIGNAL: bytes = short_text(b"signal")
MESSAGE_END: bytes = pickle.SETITEMS + pickle.BUILD + pickle.STOP

# --------------------------------------------------------------------------- grammar
# Argument kinds of an opcode.
A_BAD = 0      # not an opcode
A_FIXED = 1    # ARG_SIZE bytes of argument
A_LEN = 2      # ARG_SIZE-byte little-endian unsigned length, then that many bytes
A_SLEN = 3     # 4-byte little-endian signed length (negative: invalid), then the bytes
A_LINES = 4    # ARG_SIZE newline-terminated lines
A_PROTO = 5    # 1 byte: a protocol number <= HIGHEST_PROTOCOL
# Stack effects of an opcode.
S_PLAIN = 0    # needs POPS items above the top mark, replaces them by PUSHES items
S_MARK = 1     # pushes a mark
S_POPMARK = 2  # needs POPS items above the mark; drops to the mark; needs BELOW items under it; pushes PUSHES
S_POP = 3      # POP: drops an item, or the mark when no item is above it
S_STOP = 4     # STOP: valid with exactly one item and no open mark

_Table = Tuple[int, ...]


def _opcode_table() -> Tuple[_Table, _Table, _Table, _Table, _Table, _Table]:
    """The pickle grammar as six 256-entry tables: ``(arg_kind, arg_size, effect, pops, pushes, below)``."""
    arg_kind = [A_BAD] * 256
    arg_size = [0] * 256
    effect = [S_PLAIN] * 256
    pops = [0] * 256
    pushes = [0] * 256
    below = [0] * 256

    def op(code: Union[str, bytes], kind: int, size: int, eff: int, npop: int = 0, npush: int = 0,
           nbelow: int = 0) -> None:
        byte = code[0] if isinstance(code, bytes) else ord(code)
        arg_kind[byte], arg_size[byte], effect[byte] = kind, size, eff
        pops[byte], pushes[byte], below[byte] = npop, npush, nbelow

    for code in "N}])\x88\x89\x8f\x97":          # NONE EMPTY_DICT/LIST/TUPLE NEWTRUE NEWFALSE EMPTY_SET NEXT_BUFFER
        op(code, A_FIXED, 0, S_PLAIN, 0, 1)
    for code, size in (("K", 1), ("M", 2), ("J", 4), ("G", 8), ("h", 1), ("j", 4),
                       ("\x82", 1), ("\x83", 2), ("\x84", 4)):  # ints, BINFLOAT, BINGET, EXT1/2/4
        op(code, A_FIXED, size, S_PLAIN, 0, 1)
    for code, size in (("U", 1), ("C", 1), ("\x8c", 1), ("\x8a", 1), ("X", 4), ("B", 4),
                       ("\x8d", 8), ("\x8e", 8), ("\x96", 8)):  # length-prefixed str/bytes/long/bytearray
        op(code, A_LEN, size, S_PLAIN, 0, 1)
    for code in ("T", "\x8b"):                    # BINSTRING, LONG4: signed 4-byte length
        op(code, A_SLEN, 4, S_PLAIN, 0, 1)
    for code in "FILPSVg":                        # protocol-0 one-line arguments
        op(code, A_LINES, 1, S_PLAIN, 0, 1)
    op("c", A_LINES, 2, S_PLAIN, 0, 1)            # GLOBAL module\nname\n
    op("i", A_LINES, 2, S_POPMARK, 0, 1)          # INST module\nname\n, pops to mark
    op("p", A_LINES, 1, S_PLAIN, 1, 1)            # PUT
    for code, size in (("q", 1), ("r", 4)):       # BINPUT, LONG_BINPUT
        op(code, A_FIXED, size, S_PLAIN, 1, 1)
    for code in "\x94\x98":                        # MEMOIZE, READONLY_BUFFER
        op(code, A_FIXED, 0, S_PLAIN, 1, 1)
    op("\x95", A_FIXED, 8, S_PLAIN, 0, 0)         # FRAME: the frame's contents are opcodes
    op("\x80", A_PROTO, 1, S_PLAIN, 0, 0)         # PROTO
    op("2", A_FIXED, 0, S_PLAIN, 1, 2)            # DUP
    for code, npop in (("Q", 1), ("\x85", 1), ("R", 2), ("a", 2), ("b", 2), ("\x81", 2), ("\x86", 2),
                       ("\x93", 2), ("s", 3), ("\x87", 3), ("\x92", 3)):
        op(code, A_FIXED, 0, S_PLAIN, npop, 1)    # BINPERSID TUPLE1 REDUCE APPEND BUILD NEWOBJ ... SETITEM
    op("(", A_FIXED, 0, S_MARK)
    op("1", A_FIXED, 0, S_POPMARK, 0, 0)          # POP_MARK
    for code in "dlt\x91":                         # DICT LIST TUPLE FROZENSET
        op(code, A_FIXED, 0, S_POPMARK, 0, 1)
    op("o", A_FIXED, 0, S_POPMARK, 1, 1)          # OBJ: class and args above the mark
    for code in "eu\x90":                          # APPENDS SETITEMS ADDITEMS: container under the mark
        op(code, A_FIXED, 0, S_POPMARK, 0, 0, 1)
    op("0", A_FIXED, 0, S_POP)
    op(".", A_FIXED, 0, S_STOP)
    return (tuple(arg_kind), tuple(arg_size), tuple(effect), tuple(pops), tuple(pushes), tuple(below))


ARG_KIND, ARG_SIZE, EFFECT, POPS, PUSHES, BELOW = _opcode_table()
"""The pickle grammar the pipe splitter walks, indexed by opcode byte (both twins read it)."""
