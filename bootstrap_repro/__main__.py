"""``python -m bootstrap_repro`` is the ``bootstrap-repro`` command."""

import sys

try:  # a Ctrl-C while the command module itself is imported: one line too (main() handles the rest)
    from bootstrap_repro.cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
