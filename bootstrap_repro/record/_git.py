"""The git facts of a code repo, read with gitpython and as few git processes as possible.

:func:`read_git_state` costs two git processes (``diff HEAD --binary`` and
``ls-files --others``); commit, branch and remote are read by gitpython from
the repository files.  Nothing here does per-file Python work on tracked files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap_repro.record._errors import SnapshotError

__all__ = ["GitState", "find_repo_root", "read_git_state", "git_command", "sanitize_url", "DIFF_ARGS",
           "submodule_paths"]

#: ``git diff`` flags that make the output independent of the user's git config and
#: appliable with ``git apply --binary`` (the record's ``code.diff``).
DIFF_ARGS: tuple[str, ...] = (
    "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
    "--src-prefix=a/", "--dst-prefix=b/", "--ignore-submodules=all",
)
#: Keeps git from taking optional locks (``index.lock`` refreshes) while a run reads the repo.
_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


@dataclass(frozen=True)
class GitState:
    """What a run records about its code repo."""

    root: Path
    commit: str | None  #: None in a repo without commits (the diff is then against the empty tree)
    branch: str | None  #: None when HEAD is detached
    remote: str | None  #: URL of the branch's remote (else ``origin``), credentials removed
    diff: bytes  #: ``git diff HEAD --binary``: tracked changes, staged or not
    untracked: tuple[str, ...]  #: untracked, non-ignored files, relative POSIX paths
    tree: str | None = None  #: the commit's tree: the same content committed again has the same tree


def find_repo_root(path: Path) -> Path | None:
    """The root of the git work tree holding ``path`` (a file or a dir), or None."""
    path = Path(path).resolve()
    start = path if path.is_dir() else path.parent
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def sanitize_url(url: str | None) -> str | None:
    """Remove ``user:password@`` from every URL in ``url`` (tokens must not reach the record)."""
    if not url:
        return url
    return re.sub(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@", r"\1", url)


def _git_module() -> Any:
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # a missing git binary is reported by us
    import git

    return git


@contextmanager
def _errors(root: Path, what: str) -> Iterator[None]:
    git = _git_module()
    try:
        yield
    except git.exc.GitCommandNotFound:
        raise SnapshotError(f"code repo {root}: the git command was not found; install git (needed to record the code)") from None
    except git.exc.GitCommandError as exc:
        detail = _first_line(exc.stderr) or f"exit {exc.status}"
        raise SnapshotError(f"code repo {root}: git {what} failed ({detail}); fix the repository or move the code out of it") from None
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as exc:
        raise SnapshotError(f"code repo {root}: not a readable git repository ({exc}); fix or remove its .git") from None


def _first_line(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in str(text or "").splitlines():
        line = line.strip().removeprefix("stderr:").strip().strip("'").strip()
        if line:
            return line
    return ""


def git_command(root: Path, *args: str, what: str | None = None, **kwargs: Any) -> Any:
    """Run ``git <args>`` in ``root`` through gitpython; errors become one-line :class:`SnapshotError`."""
    git = _git_module()
    with _errors(root, what or args[0]):
        cmd = git.Git(str(root))
        with cmd.custom_environment(**_GIT_ENV):
            return cmd.execute(["git", *args], **kwargs)


def _remote_url(repo: Any, branch: str | None) -> str | None:
    names = [r.name for r in repo.remotes]
    if not names:
        return None
    name = None
    if branch is not None:
        section = f'branch "{branch}"'
        with repo.config_reader() as cfg:
            if cfg.has_option(section, "remote"):
                name = cfg.get_value(section, "remote")
    if name not in names:
        name = "origin" if "origin" in names else names[0]
    git = _git_module()
    try:
        urls: Sequence[str] = list(repo.remote(name).urls)
    except (ValueError, git.exc.GitCommandError):  # a remote without url is not an error of the run
        return None
    return sanitize_url(urls[0]) if urls else None


def read_git_state(root: Path) -> GitState:
    """Commit, branch, remote, the uncommitted diff and the untracked files of the repo at ``root``."""
    git = _git_module()
    with _errors(root, "rev-parse"):
        repo = git.Repo(str(root))
        try:
            commit: str | None = repo.head.commit.hexsha
            tree: str | None = repo.head.commit.tree.hexsha
        except ValueError:  # unborn HEAD: no commit yet
            commit = tree = None
        branch = None if repo.head.is_detached else repo.head.reference.name
        remote = _remote_url(repo, branch)
    base = commit or git_command(root, "hash-object", "-t", "tree", "/dev/null", what="hash-object").strip()
    diff = git_command(root, "diff", base, *DIFF_ARGS, "--", what="diff",
                       stdout_as_string=False, strip_newline_in_stdout=False)
    listed = git_command(root, "ls-files", "--others", "--exclude-standard", "-z", what="ls-files",
                         stdout_as_string=False, strip_newline_in_stdout=False)
    untracked = tuple(os.fsdecode(p) for p in listed.split(b"\0") if p)
    return GitState(Path(root), commit, branch, remote, bytes(diff), untracked, tree)


def submodule_paths(root: Path) -> list[str]:
    """Relative paths of the submodules declared in ``root/.gitmodules`` (no git process without one)."""
    if not (Path(root) / ".gitmodules").is_file():
        return []
    status, out, _ = git_command(root, "config", "-f", ".gitmodules", "-z", "--get-regexp", r"^submodule\..*\.path$",
                                 with_extended_output=True, with_exceptions=False)
    paths = []
    for entry in str(out or "").split("\0"):
        _, sep, value = entry.partition("\n")
        value = value.strip().strip("/")
        if sep and value and not value.startswith("/") and ".." not in Path(value).parts:
            paths.append(value)
    return sorted(set(paths))
