"""``python -m bootstrap_repro`` is the ``bootstrap-repro`` command."""

import sys

from bootstrap_repro.cli import main

sys.exit(main())
