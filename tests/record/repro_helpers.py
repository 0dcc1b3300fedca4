"""Helpers for the record tests: real temporary git repos holding a plugin and an options file."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from conftest import REPO, TINY, write_options

from bootstrap_repro.options import merge

#: A network plugin whose result depends on three files: itself (SCALE), a staged module (OFFSET)
#: and an untracked one (WIDTH) once the working tree is made dirty by :func:`make_dirty`.
NETPLUG = textwrap.dedent("""
    import torch

    SCALE = 1.0
    OFFSET = 0.0
    WIDTH = 16


    class Net(torch.nn.Module):
        def __init__(self, width, scale, offset):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, 4))
            self.scale, self.offset = scale, offset

        def forward(self, x):
            return torch.log_softmax(self.body(x) * self.scale + self.offset, dim=-1)


    def factory(engine):
        return Net(WIDTH, SCALE, OFFSET)
""")

DIRTY_NETPLUG = NETPLUG.replace("SCALE = 1.0\nOFFSET = 0.0\nWIDTH = 16\n", textwrap.dedent("""
    from staged_mod import OFFSET
    from untracked_mod import WIDTH

    SCALE = 0.5
"""))

#: A network that adds noise seeded from the OS: no two runs agree.
NOISY = textwrap.dedent("""
    import os
    import torch


    class Noisy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(8, 4)
            self.gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))

        def forward(self, x):
            noise = torch.randn(x.shape[0], 4, generator=self.gen)
            return torch.log_softmax(self.body(x) + noise, dim=-1)


    def factory(engine):
        return Noisy()
""")


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its stdout (fails the test on error)."""
    r = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def tiny_tree(exp_dir: Path, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    tree = merge(TINY, {"exp": {"dir": str(exp_dir)}})
    return merge(tree, changes or {})


def make_repo(root: Path, *, module: str = "netplug", source: str = NETPLUG,
              changes: dict[str, Any] | None = None, exp_dir: Path | None = None) -> Path:
    """A git repo: ``src/<module>.py`` (the network), ``configs/tiny.yaml``, README, .gitignore; one commit."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "src" / f"{module}.py").write_text(source)
    (root / "configs").mkdir()
    tree = tiny_tree(exp_dir or root.parent / "exp", merge({"model": {"network": {"import": module}}}, changes or {}))
    write_options(root / "configs" / "tiny.yaml", tree)
    (root / "README.md").write_text("a project\n")
    (root / ".gitignore").write_text("logs/\n*.ignored\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def make_dirty(root: Path) -> None:
    """A staged new file, an unstaged change of a tracked file, an untracked file (all change results)."""
    (root / "src" / "staged_mod.py").write_text("OFFSET = 0.25\n")
    git(root, "add", "src/staged_mod.py")
    (root / "src" / "netplug.py").write_text(DIRTY_NETPLUG)
    (root / "src" / "untracked_mod.py").write_text("WIDTH = 12\n")
    (root / "notes.ignored").write_text("ignored, not code\n")


def env_for(root: Path, **extra: str) -> dict[str, str]:
    """Environment of a run whose plugins are imported from ``root/src``."""
    return {"PYTHONPATH": os.pathsep.join([str(REPO), str(root / "src")]), **extra}
