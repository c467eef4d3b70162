"""How fast `import lookalike` and the command line start, two source trees side by side.

    python benchmarks/startup.py OLD_TREE NEW_TREE [--runs 7]

Each command runs as a fresh process with PYTHONPATH set to the tree, interleaved (old, new,
old, new, ...) so that the machine's load falls on both alike; prints the median of each and
the ratio, as Markdown rows, with the load average. Make OLD_TREE with
`git worktree add /tmp/old COMMIT`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import lookalike": ["-c", "import lookalike"],
    "lookalike --help": ["-m", "lookalike.cli", "--help"],
    "lookalike identify --help": ["-m", "lookalike.cli", "identify", "--help"],
}


def seconds(tree: str, args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=tree, env=dict(os.environ, PYTHONPATH=tree),
                   capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            for tree in (args.old, args.new):
                times.setdefault((tree, name), []).append(seconds(tree, command))
    print("load average", " / ".join(f"{value:.1f}" for value in os.getloadavg()))
    print("| command | before | after | ratio |\n|---|---:|---:|---:|")
    for name in COMMANDS:
        before = statistics.median(times[(args.old, name)])
        after = statistics.median(times[(args.new, name)])
        print(f"| `{name}` | {before * 1000:.0f} ms | {after * 1000:.0f} ms | {after / before:.2f} |")


if __name__ == "__main__":
    main()
