"""Map gcov's line counts of the generated C back to the Cython source lines (per file).

Cython marks each block of generated C with a comment naming the .pyx/.pxi line it comes
from (``/* "csrc/_framing.pyx":123``); a source line counts as reached when any executable C
line of its block ran.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from typing import Dict, Set, Tuple

MARK = re.compile(r'/\* "(csrc/[^"]+)":(\d+)')


def main(path: str) -> None:
    current = None
    lines: Dict[Tuple[str, int], bool] = {}
    for raw in open(path, encoding="utf-8", errors="replace"):
        count, _, text = raw.split(":", 2) if raw.count(":") >= 2 else ("", "", raw)
        found = MARK.search(text)
        if found:
            current = (found.group(1), int(found.group(2)))
            continue
        count = count.strip()
        if current is None or count in ("-", ""):
            continue
        lines[current] = lines.get(current, False) or (count not in ("#####", "=====") and not count.startswith("#"))
    files: Dict[str, Set[int]] = defaultdict(set)
    hit: Dict[str, Set[int]] = defaultdict(set)
    for (name, number), reached in lines.items():
        files[name].add(number)
        if reached:
            hit[name].add(number)
    for name in sorted(files):
        print(f"{name}: {len(hit[name])}/{len(files[name])} source lines with C code reached "
              f"({100 * len(hit[name]) / max(1, len(files[name])):.0f}%)")


if __name__ == "__main__":
    main(sys.argv[1])
