"""``bootstrap.compare``: the seed's ``python -m bootstrap.compare``, run as ``bootstrap-repro compare``.

``python -m bootstrap.compare -d DIR1 DIR2 -m logs eval_epoch.accuracy_top1 max`` takes the seed's
arguments (``-d``, ``-m JSON KEY min|max``, ``-n``, ``-b``) and prints bootstrap-repro's table (see
docs/migrating.md, *Commands*).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bootstrap_repro import cli

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``bootstrap-repro compare ARGV`` (``sys.argv[1:]`` by default); returns its exit code."""
    return cli.main(["compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
