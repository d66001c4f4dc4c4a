#!/usr/bin/env bash
# What the fuzz corpus of fuzz/fuzz_native.py reaches in the Cython twin, per .pyx/.pxi line.
#   fuzz/native_coverage.sh [corpus_dir]     (default build/fuzz/corpus; run fuzz/build_native.sh first)
# Builds the same generated C with gcc --coverage, replays every corpus input through the
# harness (no libFuzzer), and maps gcov's line counts back to the Cython source lines.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${1:-$ROOT/build/fuzz/corpus}
OUT=$ROOT/build/fuzz/gcov
rm -rf "$OUT" && mkdir -p "$OUT"
INCLUDE=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
cp "$ROOT/build/fuzz/_framing.c" "$OUT/_framing.c"
(cd "$OUT" && gcc -c -fPIC -O0 --coverage -I"$INCLUDE" _framing.c -o _framing.o && gcc -shared --coverage _framing.o -o _framing_c.so)
LUTE_IPC_FUZZ_EXTENSION=$OUT/_framing_c.so python "$ROOT/fuzz/replay_native.py" "$CORPUS"
(cd "$OUT" && gcov -o _framing.o _framing.c >/dev/null)
python "$ROOT/fuzz/pyx_line_coverage.py" "$OUT/_framing.c.gcov"
