#!/usr/bin/env bash
# The test command of tools/mutation_run.sh: the pure core's decoder and codec tests; exits 1
# on any failure (collection errors included), 0 when all pass. MUTATION_TESTS overrides the
# test files (e.g. only the codec's when mutating lute_ipc/codec.py).
export LUTE_IPC_PURE_PYTHON=1
# No stale bytecode: a mutant of the same size written in the same second as the last
# compiled version would otherwise run the previous code.
export PYTHONDONTWRITEBYTECODE=1
rm -rf lute_ipc/__pycache__
TESTS=${MUTATION_TESTS:-"tests/test_frame_decoder.py tests/test_decoder_edges.py tests/test_codec.py tests/test_vectors.py tests/test_restricted.py tests/test_encode_errors.py"}
# shellcheck disable=SC2086
python -m pytest -x -q -p no:cacheprovider --no-cython --timeout=60 -k "not shortcut_makes" $TESTS \
    >/dev/null 2>&1 || exit 1
