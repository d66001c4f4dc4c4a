"""Build script: adds the Cython extension ``lute_ipc._framing_c``; falls back to pure Python.

* ``LUTE_IPC_PURE_PYTHON=1``: do not build the extension (pure-Python install).
* ``LUTE_IPC_REQUIRE_EXTENSIONS=1``: a failed extension build is an error (CI, wheels).
* Otherwise a missing Cython or compiler gives one loud warning and a pure-Python install.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

PURE = os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0")
REQUIRE = os.environ.get("LUTE_IPC_REQUIRE_EXTENSIONS", "") not in ("", "0")

WARNING = """
******************************************************************************
WARNING: lute_ipc's Cython extension was not built ({reason}).
lute_ipc is installed in pure-Python mode: same behaviour, much slower decoding.
Install Cython and a C compiler and reinstall to get the fast core.
******************************************************************************
"""


def _warn(reason):
    sys.stderr.write(WARNING.format(reason=reason))


class OptionalBuildExt(build_ext):
    """build_ext that turns a compiler failure into a pure-Python install (unless required)."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # distutils raises several unrelated types here
            if REQUIRE:
                raise
            _warn(f"build failed: {exc}")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE:
                raise
            _warn(f"compiling {ext.name} failed: {exc}")


def extensions():
    if PURE:
        _warn("LUTE_IPC_PURE_PYTHON is set")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        _warn("Cython is not installed")
        return []
    from setuptools import Extension

    ext = Extension("lute_ipc._framing_c", ["csrc/_framing.pyx"], extra_compile_args=["-O3"])
    try:
        return cythonize([ext], compiler_directives={"language_level": "3"}, quiet=True)
    except Exception as exc:  # Cython reports source errors with several exception types
        if REQUIRE:
            raise
        _warn(f"cythonize failed: {exc}")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
