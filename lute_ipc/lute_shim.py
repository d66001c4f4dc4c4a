"""The LUTE switch: make an installed LUTE (``lute-lcls``) use lute_ipc, with no edit to LUTE.

``python -m lute_ipc lute-shim install`` writes one ``.pth`` file (:data:`PTH_NAME`) into the
interpreter's site-packages. At every start of that interpreter the line in it calls
:func:`activate_from_env`, which puts an import hook in front of ``sys.meta_path``: when
LUTE (its Executor, ``subprocess_task``, its Tasks, its log handler) imports
``lute.execution.ipc``, the hook returns a module whose names are lute_ipc's
(:data:`LUTE_NAMES`: every name LUTE 0.3.0 imports from it, plus ``USE_ZMQ``). Nothing is
imported before LUTE asks for that module. ``lute-shim remove`` deletes the file (switch
back); ``lute-shim status`` says what is installed and what a new process would get.

The Tasks a LUTE Executor starts run the same interpreter (``sys.executable``), so they get
the switch too. A Task that LUTE runs in *another* environment (``shell_source`` and a
first-party Task in a new environment: LUTE ``exec``s that environment's ``python`` with
``PYTHONPATH=LUTE_PATH``) gets it only if lute_ipc and the switch are installed in that
environment as well: ``.pth`` files are read in site-packages directories, never in
``PYTHONPATH`` entries.

Per-process choice, by environment only (:data:`SHIM_ENV`, read when a process starts):

* unset, ``1``, ``on``: lute_ipc (the default once installed); inherited by child processes;
* ``0``, ``off``: LUTE's own module; inherited;
* ``executor``: lute_ipc in this process, LUTE's own in the processes it starts (the variable
  is rewritten to ``0`` for them): a lute_ipc Executor running LUTE Tasks;
* ``task``: LUTE's own in this process, lute_ipc in the processes it starts (rewritten to
  ``1``): a LUTE Executor running lute_ipc Tasks.

The transport itself adapts to the peer (``LUTE_IPC_PROTOCOL``, see :mod:`lute_ipc.env`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from typing import TYPE_CHECKING, Any, Dict, MutableMapping, Optional, Sequence

if TYPE_CHECKING:  # imported where used: this module is loaded at every start-up of the environment
    import argparse
    import importlib.machinery
    from pathlib import Path

__all__ = [
    "ALIAS",
    "SHIM_ENV",
    "PTH_NAME",
    "LUTE_NAMES",
    "activate_from_env",
    "enable",
    "is_active",
    "install",
    "remove",
    "status",
    "default_site_dir",
]

ALIAS = "lute.execution.ipc"
"""The module of LUTE that the switch replaces."""
SHIM_ENV = "LUTE_IPC_SHIM"
"""Per-process choice (see the module docstring)."""
PTH_NAME = "lute_ipc_lute_shim.pth"
"""The file ``install`` writes (sorted after an editable install's ``__editable__*.pth``)."""

LUTE_NAMES = (
    "Party",
    "Message",
    "LUTE_SIGNALS",
    "Communicator",
    "PipeCommunicator",
    "SocketCommunicator",
    "TaskRequest",
    "TaskResponse",
    "TaskRequestMessage",
    "TaskResponseMessage",
    "TaskMetadataMessage",
)
"""The names ``lute.execution.ipc`` exposes under the switch (besides ``USE_ZMQ``): every
name LUTE 0.3.0 imports from that module (``tests/test_lute_shim.py`` checks LUTE's sources)."""

_BOOTSTRAP = ("s = importlib.util.find_spec('lute_ipc')\n"
              "if s is not None and s.submodule_search_locations:\n"
              " m = sys.modules.get('lute_ipc.lute_shim')\n"
              " if m is None:\n"
              "  f = importlib.util.spec_from_file_location('lute_ipc.lute_shim', "
              "os.path.join(list(s.submodule_search_locations)[0], 'lute_shim.py'))\n"
              "  m = importlib.util.module_from_spec(f)\n"
              "  sys.modules[f.name] = m\n"
              "  f.loader.exec_module(m)\n"
              " m.activate_from_env()\n")
"""What the ``.pth`` line runs: this module alone, loaded from lute_ipc's directory without
importing the ``lute_ipc`` package (nothing else of lute_ipc is imported before LUTE asks
for ``lute.execution.ipc``)."""
_PTH_LINE = f"import importlib.util, os, sys; exec({_BOOTSTRAP!r}, {{'importlib': importlib, 'os': os, 'sys': sys}})\n"
_PTH_TEXT = ("# lute_ipc: LUTE's lute.execution.ipc is lute_ipc in this environment "
             "(python -m lute_ipc lute-shim remove|status; LUTE_IPC_SHIM=0 turns it off per process)\n"
             + _PTH_LINE)
_decision: Optional[bool] = None
"""This process's choice, made by the first :func:`activate_from_env` on ``os.environ``."""
_ON = frozenset({"", "1", "on", "yes", "true", "both"})
_OFF = frozenset({"0", "off", "no", "false"})


# --------------------------------------------------------------------------- the alias
class _LuteIpcModule(types.ModuleType):
    """``lute.execution.ipc`` under the switch; ``USE_ZMQ`` reads and writes lute_ipc's default."""

    @property
    def USE_ZMQ(self) -> bool:
        from . import sockets

        return bool(sockets.USE_ZMQ)

    @USE_ZMQ.setter
    def USE_ZMQ(self, value: bool) -> None:
        from . import sockets

        sockets.USE_ZMQ = bool(value)


class _AliasLoader:
    """Makes the alias module (duck-typed loader: ``importlib.abc`` stays unimported)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _LuteIpcModule(spec.name, "LUTE's IPC module, provided by lute_ipc (python -m lute_ipc lute-shim).")

    def exec_module(self, module: types.ModuleType) -> None:
        import lute_ipc

        for name in LUTE_NAMES:
            setattr(module, name, getattr(lute_ipc, name))
        module.__all__ = list(LUTE_NAMES)  # type: ignore[attr-defined]


class _AliasFinder:
    """Answers only for :data:`ALIAS`; every other import goes on as usual."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[types.ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != ALIAS:
            return None
        # A duck-typed loader (create_module/exec_module, PEP 451); typeshed's protocol names load_module.
        return importlib.util.spec_from_loader(fullname, _AliasLoader(), origin="lute_ipc")  # type: ignore[arg-type]


def _finder_installed() -> bool:
    return any(isinstance(finder, _AliasFinder) for finder in sys.meta_path)


def enable() -> None:
    """Make this process's next ``import lute.execution.ipc`` load lute_ipc (idempotent).

    Too late if LUTE's own module was imported already: then a warning is printed and
    nothing changes (two different ``Message`` classes in one process would break LUTE).
    """
    loaded = sys.modules.get(ALIAS)
    if loaded is not None and not isinstance(loaded, _LuteIpcModule):
        sys.stderr.write(f"lute_ipc lute-shim: {ALIAS} was imported before the switch; LUTE's own module stays\n")
        return
    if not _finder_installed():
        sys.meta_path.insert(0, _AliasFinder())


def is_active() -> bool:
    """True when ``lute.execution.ipc`` is (or, once imported, will be) lute_ipc in this process."""
    loaded = sys.modules.get(ALIAS)
    if loaded is not None:
        return isinstance(loaded, _LuteIpcModule)
    return _finder_installed()


def _mode(environ: MutableMapping[str, str]) -> str:
    value = environ.get(SHIM_ENV, "").strip().lower()
    if value in _ON:
        return "on"
    if value in _OFF:
        return "off"
    if value in ("executor", "task"):
        return value
    sys.stderr.write(f"lute_ipc lute-shim: {SHIM_ENV}={value!r} is not one of 1, 0, executor, task: "
                     "LUTE's own IPC is used\n")
    return "off"


def activate_from_env(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Apply :data:`SHIM_ENV` to this process (called by the ``.pth`` line at start-up).

    Returns whether lute_ipc serves ``lute.execution.ipc`` here. ``executor``/``task``
    rewrite the variable in ``environ`` (default ``os.environ``) for the processes this one starts.
    On ``os.environ`` the choice is made once per process (a second call returns it).
    """
    global _decision
    if environ is None:
        if _decision is not None:  # some interpreters read the .pth file twice: decide once per process
            return _decision
        environ = os.environ
    mode = _mode(environ)
    if mode == "executor":
        environ[SHIM_ENV] = "0"
    elif mode == "task":
        environ[SHIM_ENV] = "1"
    active = mode in ("on", "executor")
    if active:
        enable()
    if environ is os.environ:
        _decision = active
    return active


# --------------------------------------------------------------------------- install / remove / status
def default_site_dir() -> Path:
    """The site-packages directory of this interpreter (where pip installs pure packages)."""
    import sysconfig
    from pathlib import Path

    return Path(sysconfig.get_paths()["purelib"])


def install(site_dir: Optional[Path] = None) -> Path:
    """Write the ``.pth`` file into ``site_dir`` (default :func:`default_site_dir`); returns its path."""
    path = (site_dir or default_site_dir()) / PTH_NAME
    path.write_text(_PTH_TEXT)
    return path


def remove(site_dir: Optional[Path] = None) -> Optional[Path]:
    """Delete the ``.pth`` file; returns its path, or None when it was not installed."""
    path = (site_dir or default_site_dir()) / PTH_NAME
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path


def _spec_origin(name: str) -> Optional[str]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return None if spec is None else (spec.origin or ", ".join(spec.submodule_search_locations or []))


def status(site_dir: Optional[Path] = None) -> Dict[str, Any]:
    """What is installed and what a new process of this interpreter gets, as a dict of facts."""
    from pathlib import Path

    site = site_dir or default_site_dir()
    pth = site / PTH_NAME
    lute_init = _spec_origin("lute")
    lute_ipc_origin = _spec_origin("lute_ipc")
    lute_site = str(Path(lute_init).parent.parent) if lute_init else None
    # LUTE starts Tasks of other environments with PYTHONPATH=LUTE_PATH (LUTE's site-packages):
    # lute_ipc is importable there only if it is a real directory next to lute (not editable).
    next_to_lute = bool(lute_site and (Path(lute_site) / "lute_ipc" / "__init__.py").is_file())
    installed = pth.is_file() and pth.read_text() == _PTH_TEXT
    mode = os.environ.get(SHIM_ENV)
    return {
        "pth_file": str(pth),
        "installed": installed,
        "stale_file": pth.is_file() and not installed,
        SHIM_ENV: mode,
        "new_processes_use": ("lute_ipc" if installed and _mode(dict(os.environ)) in ("on", "executor")
                              else "LUTE's own IPC"),
        "lute": lute_site,
        "lute_ipc": lute_ipc_origin,
        "lute_ipc_visible_with_PYTHONPATH=LUTE_PATH_only": next_to_lute,
        "active_in_this_process": is_active(),
    }


# --------------------------------------------------------------------------- command line
def configure_command(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m lute_ipc lute-shim``."""
    from pathlib import Path

    parser.add_argument("action", choices=("install", "remove", "status"),
                        help="install: LUTE uses lute_ipc in this environment; remove: switch back; "
                             "status: show what is installed")
    parser.add_argument("--site-dir", type=Path, default=None,
                        help="site-packages directory to write to (default: this interpreter's)")


def run_command(args: argparse.Namespace) -> int:
    """``python -m lute_ipc lute-shim install|remove|status``: 0 on success."""
    site: Optional[Path] = args.site_dir
    if args.action in ("install", "remove") and site is not None and not site.is_dir():
        what = "is not a directory" if site.exists() else "does not exist"
        sys.stderr.write(f"lute_ipc lute-shim {args.action}: --site-dir {site} {what} (give a site-packages "
                         "directory of the interpreter LUTE runs with, or omit --site-dir)\n")
        return 2
    if args.action == "install":
        try:
            path = install(site)
        except OSError as exc:
            sys.stderr.write(f"lute_ipc lute-shim install: cannot write {PTH_NAME} into "
                             f"{site or default_site_dir()}: {exc}\n")
            return 2
        print(f"installed {path}: LUTE's {ALIAS} is lute_ipc in new processes of this environment "
              f"({SHIM_ENV}=0 turns it off per process; 'lute-shim remove' switches back)")
    elif args.action == "remove":
        removed = remove(site)
        print(f"removed {removed}: LUTE uses its own IPC again" if removed else "not installed: nothing to remove")
    facts = status(site)
    if args.action == "status":
        for key, value in facts.items():
            print(f"{key}: {value}")
    if facts["installed"] and not facts["lute_ipc_visible_with_PYTHONPATH=LUTE_PATH_only"]:
        print("note: Tasks LUTE runs in another environment (PYTHONPATH=LUTE_PATH) need lute_ipc and "
              "'lute-shim install' in that environment (see docs/MIGRATION.md)")
    return 0

