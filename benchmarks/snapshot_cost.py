"""Snapshot cost: what recording the code and environment adds to every run, on a big dirty repo.

Generates a git repo with 10,000 tracked files (100 dirs x 100 small modules, one of
them the network plugin named by the options file), commits it, then dirties it: 100
tracked files edited, 20 new files staged, 10 untracked files.  Then times, in one
process (gitpython already imported, as in a run after the first snapshot):

* ``snapshot_code``: repo discovery, commit/branch/remote, ``git diff HEAD --binary``,
  ``git ls-files --others``, untracked contents and hashes;
* ``take_snapshot``: the above + installed packages + environment + cache key
  (what ``run`` does before building anything);
* writing ``repro/`` (code.diff, untracked.tar.gz, packages.txt).

Prints the median and the worst of ``--repeat`` runs (goal: take_snapshot median <= 0.5 s).

    python benchmarks/snapshot_cost.py [--files 10000] [--repeat 11]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap_repro.options import Options  # noqa: E402
from bootstrap_repro.record import snapshot_code, take_snapshot  # noqa: E402

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True)


def make_repo(root: Path, n_files: int) -> Path:
    per_dir = 100
    for i in range(n_files):
        d = root / "pkg" / f"mod{i // per_dir:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i % per_dir:03d}.py").write_text(f'"""Module {i}."""\n\nVALUE = {i}\n\n\ndef f(x):\n    return x + VALUE\n')
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "net.py").write_text("def factory(engine):\n    raise NotImplementedError\n")
    (root / "options.yaml").write_text("exp: {dir: /tmp/unused}\nmodel: {network: {import: pkg.net}}\n")
    (root / ".gitignore").write_text("logs/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "gc.auto", "0")  # no background auto-gc racing the temp dir's removal
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "10k files")
    # dirty tree: edited tracked files, staged new files, untracked files
    for i in range(0, n_files, max(1, n_files // 100)):
        p = root / "pkg" / f"mod{i // per_dir:03d}" / f"file{i % per_dir:03d}.py"
        p.write_text(p.read_text() + f"\nEDITED = {i}\n")
    for i in range(20):
        (root / "pkg" / f"staged{i}.py").write_text(f"S = {i}\n")
    git(root, "add", "pkg/staged*.py")
    for i in range(10):
        (root / f"scratch{i}.py").write_text(f"U = {i}\n" * 50)
    return root


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=11)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        repo = make_repo(Path(tmp) / "repo", args.files)
        print(f"generated {args.files} tracked files + dirty tree in {time.perf_counter() - t0:.1f} s")
        sys.path.insert(0, str(repo))
        opt = Options.load(repo / "options.yaml")
        t0 = time.perf_counter()
        snap = take_snapshot(opt)
        first = time.perf_counter() - t0
        code = snap.code.to_record()
        assert code["git"] and code["dirty"] and code["untracked"]["count"] == 10, code
        print(f"diff {len(snap.code.git.diff) / 1024:.0f} KB, {code['untracked']['count']} untracked files, "
              f"{len(snap.packages)} packages")
        code_t = timed(lambda: snapshot_code(opt), args.repeat)
        full_t = timed(lambda: take_snapshot(opt), args.repeat)
        out = Path(tmp) / "repro"
        write_t = timed(lambda: snap.write(out), args.repeat)

    def row(name: str, values: list[float]) -> str:
        return f"  {name:<36} median {statistics.median(values) * 1000:7.1f} ms   worst {max(values) * 1000:7.1f} ms"

    print(f"snapshot of a {args.files}-file dirty repo, {args.repeat} runs each:")
    print(f"  {'take_snapshot, first call':<36} {first * 1000:14.1f} ms (imports gitpython)")
    print(row("snapshot_code (git + untracked)", code_t))
    print(row("take_snapshot (code + env + key)", full_t))
    print(row("write repro/ files", write_t))
    med = statistics.median(full_t)
    print(f"goal <= 500 ms per run: {'met' if med <= 0.5 else 'NOT met'} ({med * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
