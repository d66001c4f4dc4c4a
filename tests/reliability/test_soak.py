"""The soak script's 30 s form (``python tests/reliability/soak.py --quick``) as a test."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.reliability.common import HERE, child_env

pytestmark = pytest.mark.reliability


def test_soak_quick() -> None:
    proc = subprocess.run([sys.executable, os.path.join(HERE, "soak.py"), "--quick"], env=child_env(),
                          capture_output=True, text=True, timeout=240)
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    print("\n" + summary)
    assert summary.startswith("soak: "), proc.stdout[-3000:] + proc.stderr[-3000:]
    fields = dict(re.findall(r"(\w+)=(\S+)", summary))
    assert int(fields["sent"]) > 0 and int(fields["cycles"]) >= 4
    problems = [line for line in lines if line.startswith("problem:")]
    assert fields["lost"] == "0", problems
    assert fields["fds_before"] == fields["fds_after"], problems
    assert proc.returncode == 0 and summary.startswith("soak: PASS"), "\n".join(problems) or proc.stderr[-3000:]
