#!/usr/bin/env bash
# Run fuzz/fuzz_native.py with clang's libFuzzer preloaded (build both first: fuzz/build_native.sh).
# Arguments go to libFuzzer, e.g.: fuzz/run_native.sh -max_total_time=60 -rss_limit_mb=2048
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
exec env LD_PRELOAD="$ROOT/build/fuzz/libfuzzer_rt.so" python "$ROOT/fuzz/fuzz_native.py" "$@"
