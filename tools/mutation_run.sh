#!/usr/bin/env bash
# Mutation run over the pure-Python core's frame decoder and codec (issue 17, item 7).
#
# Not part of the default test command: it runs the core tests (tools/mutation_tests.sh) once
# per mutant, tens of minutes. mutmut (from PyPI) makes the mutants; tools/mutation_driver.py
# applies each to a private copy of the tracked tree (never the working tree) and runs them
# in parallel with a timeout each:
#
#   tools/mutation_run.sh                               # both files, 2 jobs
#   JOBS=4 tools/mutation_run.sh lute_ipc/codec.py      # one file
#
# See docs/SECURITY.md ("Testing the core against hostile input") for the last score and the
# surviving mutants judged equivalent.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
python -m pip install -q "mutmut==2.5.1"
if [ $# -eq 0 ]; then set -- lute_ipc/_framing_py.py lute_ipc/codec.py; fi
python tools/mutation_driver.py --jobs "${JOBS:-2}" --timeout "${MUTANT_TIMEOUT:-120}" "$@"
