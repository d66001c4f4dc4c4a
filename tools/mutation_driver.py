"""Mutation run over the pure core's decoder and codec, with mutmut's mutation operators.

mutmut (2.x, from PyPI) generates the mutants; this driver applies each one to a private copy
of the tree and runs ``tools/mutation_tests.sh`` there, a few copies in parallel, with a
timeout per mutant (mutmut's own runner hung here under load). Never touches the working tree.

    python tools/mutation_driver.py [--jobs 2] [--timeout 120] lute_ipc/_framing_py.py lute_ipc/codec.py

Appends each result (file, line, the mutated line, status) to ``mutation-results.jsonl`` in the
work directory as it comes, then prints the score and the survivors. ``--lines A-B`` limits a
file to a line range (``path:A-B``), e.g. the decoder class.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

from mutmut import Context, list_mutations, mutate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tracked_copy(target: str) -> None:
    files = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], check=True, capture_output=True).stdout
    for name in files.decode().split("\0"):
        if name and os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(os.path.dirname(os.path.join(target, name)) or target, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), os.path.join(target, name))


def mutants(spec: str) -> List[Tuple[str, Any, str, str]]:
    path, _, lines = spec.partition(":")
    first, _, last = lines.partition("-")
    source = open(os.path.join(ROOT, path)).read()
    found = []
    for mutation_id in list_mutations(Context(source=source, filename=path)):
        if lines and not int(first) <= mutation_id.line_number + 1 <= int(last):
            continue
        mutated, count = mutate(Context(source=source, filename=path, mutation_id=mutation_id))
        if count:
            found.append((path, mutation_id, mutated, mutation_id.line.strip()))
    return found


# The tests that exercise each mutated file (fewer tests per mutant: a faster run).
TESTS_FOR = {
    "lute_ipc/_framing_py.py": "tests/test_vectors.py tests/test_frame_decoder.py tests/test_decoder_edges.py "
                               "tests/test_encode_errors.py",
    "lute_ipc/codec.py": "tests/test_codec.py tests/test_restricted.py tests/test_encode_errors.py "
                         "tests/test_decoder_edges.py tests/test_frame_decoder.py",
}


class _Line:
    """The position of a mutated line, as mutmut's MutationID gives it."""

    def __init__(self, line_number: int, index: int) -> None:
        self.line_number = line_number
        self.index = index


def survivors_of(results: str) -> List[Tuple[str, Any, str, str]]:
    """The surviving mutants of an earlier run, rebuilt on the current sources (same lines)."""
    found = []
    for raw in open(results):
        r = json.loads(raw)
        if r["status"] != "survived":
            continue
        lines = open(os.path.join(ROOT, r["file"])).read().split("\n")
        number = r["line_number"] - 1
        if number >= len(lines) or lines[number].strip() != r["line"]:
            same = [i for i, text in enumerate(lines) if text.strip() == r["line"]]
            if len(same) != 1:
                print(f"skipped (source changed): {r['file']}:{r['line_number']}", flush=True)
                continue
            number = same[0]  # the line moved
        indent = lines[number][:len(lines[number]) - len(lines[number].lstrip())]
        lines[number] = indent + r["mutant"]
        found.append((r["file"], _Line(number, r["index"]), "\n".join(lines), r["line"]))
    return found


def run_one(copy: str, path: str, mutated: str, timeout: float) -> str:
    target = os.path.join(copy, path)
    original = open(target).read()
    with open(target, "w") as handle:
        handle.write(mutated)
    try:
        env = dict(os.environ)
        if path in TESTS_FOR:
            env["MUTATION_TESTS"] = TESTS_FOR[path]
        done = subprocess.run(["bash", "tools/mutation_tests.sh"], cwd=copy, timeout=timeout, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return "killed" if done.returncode != 0 else "survived"
    except subprocess.TimeoutExpired:
        return "timeout"  # an endless loop: killed by the timeout
    finally:
        with open(target, "w") as handle:
            handle.write(original)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--sample", type=int, default=0, help="test a random sample of this many mutants")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--recheck", default=None,
                        help="a results .jsonl: run its survivors again, against the current tests")
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="lute-ipc-mutation-")
    copies = []
    for job in range(args.jobs):
        copy = os.path.join(work, f"copy{job}")
        tracked_copy(copy)
        copies.append(copy)
    if args.recheck:
        todo = survivors_of(args.recheck)
    else:
        todo = [m for path in args.paths for m in mutants(path)]
    total = len(todo)
    if args.sample and args.sample < total:
        import random

        todo = random.Random(args.seed).sample(todo, args.sample)
        print(f"random sample of {args.sample} of the {total} mutants (seed {args.seed})", flush=True)
    print(f"{len(todo)} mutants in {', '.join(args.paths)}; {args.jobs} jobs; work dir {work}", flush=True)
    results: List[Dict[str, Any]] = [{} for _ in todo]
    free = list(copies)
    log = open(os.path.join(work, "mutation-results.jsonl"), "a")
    start = time.monotonic()

    def job(index: int) -> None:
        copy = free.pop()
        try:
            path, mutation_id, mutated, line = todo[index]
            status = run_one(copy, path, mutated, args.timeout)
            results[index] = {"file": path, "line_number": mutation_id.line_number + 1, "index": mutation_id.index,
                              "line": line, "mutant": mutated.splitlines()[mutation_id.line_number].strip(),
                              "status": status}
            log.write(json.dumps(results[index]) + "\n")
            log.flush()
            done = sum(1 for r in results if r)
            if done % 25 == 0:
                print(f"{done}/{len(todo)} after {time.monotonic() - start:.0f} s", flush=True)
        finally:
            free.append(copy)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(job, range(len(todo))))
    survived = [r for r in results if r["status"] == "survived"]
    print(f"killed {len(results) - len(survived)} of {len(results)} ({100 * (len(results) - len(survived)) / len(results):.1f}%)"
          f" in {time.monotonic() - start:.0f} s; survivors:")
    for r in survived:
        print(f"  {r['file']}:{r['line_number']}  {r['line']}  ->  {r['mutant']}")


if __name__ == "__main__":
    sys.exit(main())
