"""Red team 16: what ``LUTE_IPC_ALLOW=lute`` opens on a TCP Executor with authentication off.

docs/MIGRATION.md and docs/SECURITY.md: with ``LUTE_IPC_REQUIRE_AUTH=0`` and
``LUTE_IPC_ALLOW=lute`` a lute_ipc Executor decodes LUTE's parameter and result models "without
opening arbitrary unpickling"; ``BUILD`` applies state "never on a class". Anyone who can reach
the port may then send frames, so what one hostile frame can do must stay inside the object it
decodes.

Held (passing tests below): the prefix is a module boundary (``lute_evil``, ``lutefoo``,
``lute_ipc`` are not ``lute``), names a ``lute`` module imported from elsewhere (``os``,
``subprocess``) are refused, and malformed values of the variable are refused or ignored.

Broken: LUTE's ``TaskParameters.__setstate__`` (an allowed class's own ``__setstate__``, which
the restricted unpickler calls with the pickled dict) copies every pair of the state's
``_lute_config_attrs`` onto the model's *class* ``Config`` with ``setattr``. One unsigned frame
from any host therefore rewrites class attributes of LUTE's models inside the Executor process,
for the rest of its life: ``set_result``, ``result_from_params``, ``run_directory``,
``impl_schemas`` (which LUTE's Executor reads when it records the Task's result), and through
pydantic's ``__config__`` (a subclass of ``Config``) its validation settings such as ``extra``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import pytest

pytestmark = pytest.mark.timeout(120)

EXECUTOR = textwrap.dedent(
    """
    import json, sys, time
    from lute_ipc import Party, SocketCommunicator
    from lute.io.models.tests import TestSocketParameters as Model

    def config():
        return {"set_result": Model.Config.set_result, "run_directory": Model.Config.run_directory,
                "extra": str(getattr(Model.__config__, "extra", None))}

    before = config()
    ex = SocketCommunicator(Party.EXECUTOR)
    ex.delayed_setup()
    print(__import__("os").environ["LUTE_PORT"], flush=True)
    got = None
    deadline = time.monotonic() + 30
    while got is None and time.monotonic() < deadline:
        msg = ex.read(wait=0.5)
        if msg.contents is not None:
            got = type(msg.contents).__name__
    ex.clear_communicator()
    print(json.dumps({"got": got, "before": before, "after": config(), "stats": repr(ex.stats)[:400]}), flush=True)
    """
)

ATTACKER = textwrap.dedent(
    """
    import copyreg, pickle, sys
    from lute_ipc import Message
    from lute.io.models.tests import TestSocketParameters

    STATE = {"__dict__": {}, "__fields_set__": set(),
             "_lute_config_attrs": {"set_result": True, "run_directory": "/attacker/chose/this",
                                    "extra": "allow"}}

    class Crafted:
        def __reduce_ex__(self, protocol):
            return (copyreg._reconstructor, (TestSocketParameters, object, None), STATE)

    payload = pickle.dumps(Message(contents=Crafted(), signal="TASK_LOG"), protocol=4)
    sys.stdout.buffer.write(b"MSG;;;%d;;;" % len(payload) + payload + b";;;GSM")
    """
)


def _env(pure: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}
    env.update(LUTE_USE_TCP="1", LUTE_USE_ZMQ="0", LUTE_BIND_HOST="127.0.0.1", LUTE_IPC_REQUIRE_AUTH="0",
               LUTE_IPC_ALLOW="lute", LUTE_IPC_SHIM="0", LUTE_IPC_PURE_PYTHON=pure)
    return env


def _lute_models_importable() -> None:
    probe = subprocess.run([sys.executable, "-c", "import lute.io.models.tests"], capture_output=True,
                           env=dict(os.environ, LUTE_IPC_SHIM="0"), timeout=120)
    if probe.returncode != 0:
        pytest.skip("LUTE's parameter models (lute-lcls 0.3.0 with pydantic 1) are not importable here")


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
def test_hostile_frame_cannot_rewrite_lute_model_classes(pure: str) -> None:
    _lute_models_importable()
    env = _env(pure)
    executor = subprocess.Popen([sys.executable, "-c", EXECUTOR], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert executor.stdout is not None
        port = int(executor.stdout.readline())
        frame = subprocess.run([sys.executable, "-c", ATTACKER], env=env, capture_output=True, timeout=60,
                               check=True).stdout
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(frame)
        out, err = executor.communicate(timeout=60)
    finally:
        executor.kill()
    report = json.loads(out.strip().splitlines()[-1])
    assert report["before"]["set_result"] is False, report
    # Decoded or refused, the frame must not reach beyond the object it describes.
    assert report["after"] == report["before"], (
        f"one frame from the network changed LUTE's model classes in the Executor: {report}; stderr={err[-800:]!r}")


# --------------------------------------------------------------------------- what held
PREFIX_PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from lute_ipc.codec import make_restricted_loads

    loads = make_restricted_loads()
    verdicts = {}
    for name in sys.argv[2:]:
        module, _, attr = name.rpartition(".")
        try:
            loads(b"\\x80\\x02c" + module.encode() + b"\\n" + attr.encode() + b"\\n.")
            verdicts[name] = "allowed"
        except Exception as exc:
            verdicts[name] = type(exc).__name__
    print(json.dumps(verdicts))
    """
)

LOOKALIKES = ["lute_evil.Boom", "lutefoo.Boom", "lute_ipc.executor.TaskRunner", "lute_ipc.tunnel.Tunnel"]
"""Modules whose names start with ``lute`` but are not ``lute`` or under ``lute.``."""
IMPORTED_INTO_LUTE = ["lute.execution.executor.os", "lute.execution.executor.subprocess",
                      "lute.execution.ipc.pickle", "lute.__builtins__", "lute.execution.executor.Executor.__init__"]
"""Names reachable as attributes of ``lute`` modules but not classes defined there."""


def _write_lookalikes(root: Path) -> None:
    marker = root / "PWNED"
    for package in ("lute_evil", "lutefoo"):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text(
            "class Boom:\n"
            "    def __setstate__(self, state):\n"
            f"        open({str(marker)!r}, 'w').write('pwned')\n")


@pytest.mark.parametrize("allow", ["lute", " lute ", "lute,", "lute, lute_ipc_nothing"])
def test_allow_prefix_is_a_module_boundary(tmp_path: Path, allow: str) -> None:
    _lute_models_importable()
    _write_lookalikes(tmp_path)
    env = dict(_env("0"), LUTE_IPC_ALLOW=allow)
    names = LOOKALIKES + IMPORTED_INTO_LUTE + ["lute.io.models.tests.TestSocketParameters"]
    done = subprocess.run([sys.executable, "-c", PREFIX_PROBE, str(tmp_path), *names], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdicts.pop("lute.io.models.tests.TestSocketParameters") == "allowed"
    assert all(v == "ForbiddenClass" for v in verdicts.values()), verdicts
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("allow", ["", " ", ",", "LUTE", "lut", "lute_"])
def test_allow_values_that_name_no_lute_module_open_nothing(tmp_path: Path, allow: str) -> None:
    _lute_models_importable()
    _write_lookalikes(tmp_path)
    env = dict(_env("0"), LUTE_IPC_ALLOW=allow)
    names = LOOKALIKES + ["lute.io.models.tests.TestSocketParameters", "subprocess.Popen"]
    done = subprocess.run([sys.executable, "-c", PREFIX_PROBE, str(tmp_path), *names], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(verdicts.values()) == {"ForbiddenClass"}, verdicts


@pytest.mark.parametrize("allow", ["*", ".", "lute.", "lute.*"])
def test_allow_wildcards_are_configuration_errors(allow: str) -> None:
    env = dict(_env("0"), LUTE_IPC_ALLOW=allow)
    done = subprocess.run([sys.executable, "-c", "from lute_ipc.codec import make_restricted_loads as m; m()"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "ConfigurationError" in done.stderr, (done.returncode, done.stderr[-500:])


@pytest.mark.parametrize("value", ["0", "false", "no", "off", " 0", "0 "])
def test_auth_off_values_are_loudly_logged(value: str) -> None:
    """Every accepted spelling of "off" logs the SECURITY warning; unknown ones are refused."""
    script = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s")
        from lute_ipc import Party, SocketCommunicator
        ex = SocketCommunicator(Party.EXECUTOR)
        ex.delayed_setup()
        ex.clear_communicator()
        """)
    env = dict(_env("0"), LUTE_IPC_REQUIRE_AUTH=value)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
    assert "WARNING" in done.stdout and "authentication" in done.stdout and "OFF" in done.stdout, done.stdout


@pytest.mark.parametrize("value", ["garbage", "00", "0.0", "disable"])
def test_unknown_auth_values_are_refused(value: str) -> None:
    script = "from lute_ipc import Party, SocketCommunicator as S; S(Party.EXECUTOR).delayed_setup()"
    env = dict(_env("0"), LUTE_IPC_REQUIRE_AUTH=value)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "ConfigurationError" in done.stderr, (done.returncode, done.stderr[-500:])
