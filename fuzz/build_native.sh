#!/usr/bin/env bash
# Build what fuzz/fuzz_native.py needs (clang, Debian: apt-get install clang; Cython):
#   build/fuzz/_framing_c.so    the Cython twin with libFuzzer's coverage instrumentation
#                               (-fsanitize=fuzzer-no-link); the installed extension is untouched
#   build/fuzz/libfuzzer_rt.so  clang's libFuzzer (no main) as a shared library, preloaded by
#                               fuzz/run_native.sh so the extension's counters register with it
# ASAN=1 adds AddressSanitizer to the extension (then preload an ASan+libFuzzer runtime instead).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p build/fuzz
python -m cython -3 --module-name lute_ipc._framing_c csrc/_framing.pyx -o build/fuzz/_framing.c
INCLUDE=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
SANITIZE="-fsanitize=fuzzer-no-link"
if [ "${ASAN:-0}" = 1 ]; then SANITIZE="$SANITIZE,address"; fi
clang -shared -fPIC -O1 -g $SANITIZE -I"$INCLUDE" build/fuzz/_framing.c -o build/fuzz/_framing_c.so
# libFuzzer without main(): clang's own (LLVM packages that ship compiler-rt), else the copy atheris
# installs next to itself in site-packages (Debian's clang 14 ships none).
RUNTIME=$(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)
if [ ! -f "$RUNTIME" ]; then
    RUNTIME=$(python -c "import atheris, os; print(os.path.join(os.path.dirname(os.path.dirname(atheris.__file__)), 'libclang_rt.fuzzer_no_main.a'))")
fi
if [ ! -f "$RUNTIME" ]; then
    echo "build_native.sh: no libFuzzer runtime (libclang_rt.fuzzer_no_main): clang has none and atheris is not installed" >&2
    exit 1
fi
clang -shared -fPIC -o build/fuzz/libfuzzer_rt.so -Wl,--whole-archive "$RUNTIME" -Wl,--no-whole-archive \
    -lstdc++ -lpthread
echo "built build/fuzz/_framing_c.so ($SANITIZE) and build/fuzz/libfuzzer_rt.so"
