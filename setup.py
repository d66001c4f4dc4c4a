"""Build script: adds the Cython extension ``lute_ipc._framing_c``; a build that cannot compile it says so.

Metadata lives in ``pyproject.toml``; this file only decides how to build the extension:

* Cython installed: compile ``csrc/_framing.pyx`` (the build requirement, so the normal case).
* Cython missing but ``csrc/_framing.c`` present (it ships in the sdist): compile the C.
* ``LUTE_IPC_PURE_PYTHON=1``: no extension, a pure-Python install (same behaviour, slower).
* Otherwise a failure to build the extension (no compiler, no Python headers) FAILS the build,
  with a message that says why and how to choose the pure-Python install instead. Falling back
  quietly is not an option: pip shows a build's output only when it fails (or under ``-v``),
  and it caches the wheel it built, so a silent pure build would stay slow even after a
  compiler is installed. lute_ipc also warns at import when the pure core is in use without
  ``LUTE_IPC_PURE_PYTHON`` (``python -m lute_ipc info`` shows why).
  (``LUTE_IPC_REQUIRE_EXTENSIONS=1``, which asked for this before, is no longer needed at build time;
  the test suite still reads it to insist that the extension loaded.)
"""

from __future__ import annotations

import os
import sys
from typing import List, NoReturn

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
PYX = os.path.join("csrc", "_framing.pyx")
GENERATED_C = os.path.join("csrc", "_framing.c")
EXTENSION = "lute_ipc._framing_c"

PURE = os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0")

FAILURE = """
******************************************************************************
ERROR: lute_ipc's Cython extension could not be built: {reason}

Either install a C compiler and the Python headers (e.g. gcc and python3-dev)
and install again, or install the pure-Python core (same behaviour, much
slower) on purpose:

    LUTE_IPC_PURE_PYTHON=1 pip install --no-cache-dir <what you installed>

(--no-cache-dir: pip would otherwise reuse the wheel it cached for this version.)
******************************************************************************
"""


def _fail(reason: str) -> NoReturn:
    """Stop the build with the message above (pip shows a failed build's output)."""
    sys.stderr.write(FAILURE.format(reason=reason.strip()))
    sys.stderr.flush()
    raise SystemExit(1)


class ExtensionBuildExt(build_ext):
    """build_ext whose failure ends with the explanation above instead of a bare compiler error."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # setuptools/distutils raise several unrelated types here
            _fail(f"compiling {ext.name} failed ({exc})")


def extensions() -> List[Extension]:
    """The extension to build: from the .pyx with Cython, else from the shipped C (none when pure)."""
    if PURE:
        sys.stderr.write("lute_ipc: LUTE_IPC_PURE_PYTHON is set: installing the pure-Python core only\n")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if os.path.exists(os.path.join(HERE, GENERATED_C)):
            # The sdist ships the C that Cython generated from csrc/*.pyx|pxi.
            return [Extension(EXTENSION, [GENERATED_C], extra_compile_args=["-O3"])]
        _fail("Cython is not installed and there is no generated csrc/_framing.c to compile")
    ext = Extension(EXTENSION, [PYX], extra_compile_args=["-O3"])
    try:
        return list(cythonize([ext], compiler_directives={"language_level": "3"}, quiet=True))
    except Exception as exc:  # Cython reports source errors with several exception types
        _fail(f"cythonize failed ({exc})")


setup(ext_modules=extensions(), cmdclass={"build_ext": ExtensionBuildExt})
