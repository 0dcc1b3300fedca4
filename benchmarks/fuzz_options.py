"""A deeper Hypothesis run of ``tests/test_fuzz_options.py`` (the suite runs 2,000 examples).

    python benchmarks/fuzz_options.py [--examples 50000]

Prints how many generated bad inputs were tried and that each ended in one ``error:`` line with
exit code 2 and nothing created (pytest's own output follows on failure, with the shrunk example).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50_000, help="bad inputs to generate in all")
    args = parser.parse_args()
    env = {**os.environ, "BOOTSTRAP_REPRO_FUZZ_EXAMPLES": str(args.examples)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "test_fuzz_options.py"), "-k", "refused"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-8000:], proc.stderr[-2000:])
        print(f"fuzz: FAILED after {took:.0f} s (up to {args.examples} examples); the shrunk case is above")
        return 1
    print(f"fuzz: {args.examples} generated bad inputs (3/4 in the options file, 1/4 on the command line): "
          f"every one exit 2, one error: line, nothing created ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
