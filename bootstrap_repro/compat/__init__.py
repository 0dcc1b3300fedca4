"""The compatibility layer for bootstrap.pytorch projects (see docs/migrating.md).

``bootstrap/`` here is served as the top-level package ``bootstrap`` by the import alias of
:mod:`bootstrap_repro._bootstrap_alias`: ``from bootstrap.lib.options import Options`` works in a
plain script and under ``bootstrap-repro run``, unless a real bootstrap.pytorch is installed (it
then wins).  Import those modules by their ``bootstrap.*`` names only; the package refuses to be
imported as ``bootstrap_repro.compat.bootstrap`` (that would make a second copy of every class).
"""
