"""Move a bootstrap.pytorch project to bootstrap-repro's API (``bootstrap-repro migrate``), and ``new`` projects.

>>> m = plan("path/to/project")        # reads, writes nothing
>>> print(m.diff()); [str(n) for n in m.notes]
>>> m.write()                          # each changed file replaced atomically

Python: ``bootstrap.*`` imports that have an equivalent whose behaviour is the same for the
module's uses move to ``bootstrap_repro.*`` (:mod:`._python`).  Options files: ``misc.cuda`` becomes
``engine.device`` and released metric names (``accuracy_top1``) the built-in metric's (``acctop1``)
where that is the same experiment (:mod:`._options`).  The rest is left, with a note saying why:
the compatibility layer (``import bootstrap``) keeps it working.
"""

from bootstrap_repro.migrate._notes import Note
from bootstrap_repro.migrate._project import Migration, migrate_sources, plan
from bootstrap_repro.migrate._template import SEED_TEMPLATE, new_project, render

__all__ = ["Migration", "Note", "plan", "migrate_sources", "new_project", "render", "SEED_TEMPLATE"]
