"""Desired state from a branch of a Git repository, like Flux's GitRepository source.

Called by the controller through :func:`reconciler.sources.open_source`. What it guarantees:

- The source keeps its own clone under ``cache_dir`` (one folder per URL, branch and path, named
  by a hash), and each ``read()`` fetches the branch (by default the branch the remote's HEAD
  names), checks its tip out detached with ``--force`` and removes every untracked file, then
  loads the manifests of that working tree. ``Snapshot.revision`` is the commit read, and file
  names are relative to the repository root (``plans/x.yaml``), never to the clone folder.
- With a fixed ``revision`` (a commit, tag or branch, ``HEAD~1`` naming the branch's tip's parent),
  ``read()`` checks that commit out instead of the branch's tip, from a clone of its own that
  keeps the history (``reconciler diff --revision``).
- Nothing from the remote is ever executed: the clone has no hooks (``core.hooksPath=/dev/null``,
  no templates), submodules are not fetched, and symlinks are checked out as plain files holding
  their target, so no manifest read can leave the checkout. These settings are passed on every
  command, not stored, so a tampered clone config cannot undo them.
- The URL is given to each fetch and never written to the clone's config, so credentials in an
  https URL stay out of the cache; they are also removed from every message and description.
- Every git command is bounded (``timeout``; git is killed after it) and never prompts.
- A failure to reach the remote, or a missing branch or path, raises :class:`SourceError` with
  git's own explanation; the clone is kept for the next try. A clone that is unusable (a broken
  ``.git``, missing objects, a failed checkout while the remote answers) is deleted and cloned
  again, once per read.
- ``Snapshot.content`` reads task inputs from the commit read (its tree in the object store),
  never from the working tree: regular files only (mode 100644 or 100755), no symlinks.
- For a repository on this machine (a plain path or a ``file://`` URL) ``wait()`` watches that
  repository's refs, so a ``git push`` into it wakes the loop within a second; for a remote URL
  ``wait()`` is the caller's interval, cut short by ``wake()`` (the webhook receiver).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
from git.exc import CommandError, GitError, ODBError

from .base import ChangeWatcher, FileContent, Snapshot, SourceError, Wakeup, load_tree, relative_parts
from .locations import SCHEME, is_bare_repository, local_repository

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0

# Passed to every git command with -c, so they hold whatever the clone's own config says.
_SAFE_CONFIG = {
    "core.hooksPath": "/dev/null",
    "core.symlinks": "false",
    "core.fsmonitor": "false",
    # Without reflogs, commits that are no longer the tip can be garbage-collected.
    "core.logAllRefUpdates": "false",
    "submodule.recurse": "false",
    "fetch.recurseSubmodules": "false",
    "protocol.ext.allow": "never",
    # Automatic gc must finish inside the bounded command, not linger as a detached process.
    "gc.autoDetach": "false",
    "advice.detachedHead": "false",
    "init.defaultBranch": "unused",
}
_SAFE_OPTIONS = tuple(option for key, value in _SAFE_CONFIG.items() for option in ("-c", f"{key}={value}"))

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<password>:[^/@\s]*)?@")


def redact(text: str) -> str:
    """Removes credentials from URLs in ``text``: all of an http(s) user part, other passwords."""

    def hide(match: re.Match[str]) -> str:
        scheme = match["scheme"]
        if scheme.lower().startswith("http"):
            return f"{scheme}***@"
        return f"{scheme}{match['user']}{':***' if match['password'] else ''}@"

    return _USERINFO.sub(hide, text)


class _CloneBroken(Exception):
    """The clone, not the remote, is at fault: delete it and clone again."""


class GitSource:
    def __init__(self, url: str, *, branch: str | None = None, path: str | None = None, cache_dir: Path,
                 timeout: float = DEFAULT_TIMEOUT, revision: str | None = None) -> None:
        if url.startswith("-"):
            raise ValueError(f"{url!r} is not a repository URL")
        if branch is not None:
            _check_branch(branch)
        if revision is not None and (not revision or revision.startswith("-") or any(c.isspace() for c in revision)):
            raise ValueError(f"{revision!r} is not a valid revision")
        # A fixed revision (``reconciler diff --revision``): a commit, tag or branch, read instead
        # of the branch's tip; its clone keeps the whole history so relative names (main~1) resolve.
        self._revision = revision
        self._parts = relative_parts(path)
        self._local = local_repository(url)
        # git runs in other folders, so a relative path must be made absolute first.
        self._url = str(self._local) if self._local is not None and not SCHEME.match(url) else url
        self._shown = redact(self._url)
        self._branch = branch
        self._default_branch: str | None = None
        self._timeout = timeout
        self._cache_dir = cache_dir.expanduser().absolute()
        # One clone per URL, branch and path: two sources never check out into the same tree.
        key = hashlib.sha256("\n".join((self._shown, branch or "", "/".join(self._parts), *(
            (f"revision {revision}",) if revision else ()))).encode()).hexdigest()[:16]
        self._clone = self._cache_dir / f"git-{key}"
        where = f", path {'/'.join(self._parts)}" if self._parts else ""
        self.description = f"git {self._shown} ({f'branch {branch}' if branch else 'default branch'}{where})"
        if revision:
            self.description = f"git {self._shown} (revision {revision}{where})"
        self._env = {
            "GIT_TERMINAL_PROMPT": "0",
            # Commands run outside the clone (ls-remote, init) must not find an enclosing repository.
            "GIT_CEILING_DIRECTORIES": str(self._cache_dir.parent),
        }
        self._lock = threading.Lock()
        self._files: GitFiles | None = None  # the inputs of the last revision read, kept while it stays
        self._wakeup = Wakeup()
        self._watcher = (
            ChangeWatcher(name=f"watch {self._shown}", wakeup=self._wakeup, locate=self._remote_git_dir,
                          accept=_is_ref)
            if self._local is not None else None
        )

    def read(self) -> Snapshot:
        with self._lock:
            try:
                self._cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SourceError(f"cannot create {self._cache_dir}: {exc.strerror or exc}") from exc
            with self._exclusive():
                branch = self._branch or self._remote_default_branch()
                try:
                    revision = self._update(branch=branch)
                except _CloneBroken as exc:
                    log.warning("%s: %s; cloning again", self.description, exc)
                    self._discard()
                    try:
                        revision = self._update(branch=branch)
                    except _CloneBroken as again:
                        raise SourceError(f"{self._shown}: {again}") from again
                target = self._clone.joinpath(*self._parts)
                if not target.exists():
                    raise SourceError(f"{'/'.join(self._parts)} does not exist in {self._shown} at {revision[:12]}")
                try:
                    load, files = load_tree(root=self._clone, target=target)
                except OSError as exc:
                    raise SourceError(f"cannot list the clone {self._clone}: {exc.strerror or exc}") from exc
                if self._files is None or self._files.revision != revision:
                    self._files = GitFiles(self._clone, revision)
                return Snapshot(load=load, revision=revision, files=files, content=self._files)

    def wait(self, timeout: float) -> bool:
        return self._wakeup.wait(timeout)

    def wake(self) -> None:
        self._wakeup.wake()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()

    # --- the clone ---

    def _update(self, *, branch: str) -> str:
        """Fetch ``branch`` and check its tip out; returns the commit. Raises _CloneBroken or SourceError."""
        self._open_or_create()
        if self._revision is not None:
            return self._check_out_revision(self._revision, branch=branch)
        remote_ref = f"refs/remotes/origin/{branch}"
        try:
            # Shallow: only the tip is ever read, and history can be large.
            self._run_in_clone("fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--depth=1",
                               "--", self._url, f"+refs/heads/{branch}:{remote_ref}")
        except CommandError as exc:
            self._check_remote(branch=branch, fetch_error=exc)
            raise _CloneBroken(f"fetch failed although the remote answers: {_error_text(exc)}") from exc
        try:
            revision = self._run_in_clone("rev-parse", "--verify", "--quiet", f"{remote_ref}^{{commit}}").strip()
            self._run_in_clone("checkout", "--quiet", "--force", "--detach", revision)
            # -ff: also nested repositories; -x: ignored files too. The tree must be the commit, exactly.
            self._run_in_clone("clean", "-ffdxq")
        except CommandError as exc:
            raise _CloneBroken(f"checkout failed: {_error_text(exc)}") from exc
        return revision

    def _check_out_revision(self, revision: str, *, branch: str) -> str:
        """Fetch every branch and tag with their history and check ``revision`` out (``HEAD``
        names the tip of ``branch``, as in the repository itself)."""
        try:
            self._run_in_clone("fetch", "--quiet", "--no-recurse-submodules", "--", self._url,
                               "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
        except CommandError as exc:
            raise SourceError(f"cannot fetch from {self._shown}: {_error_text(exc)}") from exc
        if revision.startswith("HEAD"):
            revision = f"refs/remotes/origin/{branch}{revision.removeprefix('HEAD')}"
        for candidate in (revision, f"refs/remotes/origin/{revision}", f"refs/tags/{revision}"):
            try:
                commit = self._run_in_clone("rev-parse", "--verify", "--quiet", "--end-of-options",
                                            f"{candidate}^{{commit}}").strip()
            except CommandError:
                continue
            try:
                self._run_in_clone("checkout", "--quiet", "--force", "--detach", commit)
                self._run_in_clone("clean", "-ffdxq")
            except CommandError as exc:
                raise _CloneBroken(f"checkout failed: {_error_text(exc)}") from exc
            return commit
        raise SourceError(f"revision {revision!r} not found in {self._shown}")

    def _open_or_create(self) -> None:
        if self._clone.exists() or self._clone.is_symlink():
            try:
                repo = git.Repo(self._clone)
                try:
                    usable = not repo.bare and Path(repo.git_dir) == self._clone / ".git"
                finally:
                    repo.close()
                # Reads HEAD and config: fails on a clone whose .git is damaged.
                self._run_in_clone("rev-parse", "--absolute-git-dir")
            except (GitError, OSError, ValueError) as exc:
                raise _CloneBroken(f"{self._clone} is not a usable clone ({type(exc).__name__})") from exc
            if not usable:
                raise _CloneBroken(f"{self._clone} is not a usable clone")
            return
        try:
            self._run_outside("init", "--quiet", "--template=", str(self._clone))
        except (CommandError, OSError) as exc:
            raise SourceError(f"cannot create a clone in {self._clone}: {_error_text(exc)}") from exc

    def _discard(self) -> None:
        try:
            if self._clone.is_dir() and not self._clone.is_symlink():
                shutil.rmtree(self._clone)
            else:
                self._clone.unlink(missing_ok=True)
        except OSError as exc:
            raise SourceError(f"cannot remove the broken clone {self._clone}: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Keeps two reconciler processes from working in one clone at the same time."""
        lock_path = self._clone.with_name(self._clone.name + ".lock")
        try:
            handle = open(lock_path, "a")  # noqa: SIM115 - held for the whole block
        except OSError as exc:
            raise SourceError(f"cannot open {lock_path}: {exc.strerror or exc}") from exc
        with handle:
            deadline = time.monotonic() + self._timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SourceError(f"{self._clone} is in use by another process") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- the remote ---

    def _remote_default_branch(self) -> str:
        if self._default_branch is not None:
            return self._default_branch
        try:
            listing = self._run_outside("ls-remote", "--symref", "--", self._url, "HEAD")
        except (CommandError, OSError) as exc:
            raise SourceError(f"cannot reach {self._shown}: {_error_text(exc)}") from exc
        for line in listing.splitlines():
            target, _, name = line.partition("\t")
            if name == "HEAD" and target.startswith("ref: refs/heads/"):
                self._default_branch = target.removeprefix("ref: refs/heads/")
                return self._default_branch
        raise SourceError(f"{self._shown} names no default branch (is it empty?); choose one with --branch")

    def _check_remote(self, *, branch: str, fetch_error: CommandError) -> None:
        """Raises SourceError when the remote, not the clone, made the fetch fail."""
        try:
            listing = self._run_outside("ls-remote", "--heads", "--", self._url, f"refs/heads/{branch}")
        except (CommandError, OSError):
            raise SourceError(f"cannot fetch from {self._shown}: {_error_text(fetch_error)}") from fetch_error
        if f"\trefs/heads/{branch}" not in listing:
            if branch == self._default_branch:
                self._default_branch = None  # the remote's HEAD moved on: ask again next time
            raise SourceError(f"branch {branch!r} not found in {self._shown}") from fetch_error

    def _remote_git_dir(self) -> Path | None:
        """The folder holding the local repository's refs, or None while it does not exist."""
        if self._local is None:
            return None
        if (self._local / ".git").is_dir():
            return self._local / ".git"
        if is_bare_repository(self._local):
            return self._local
        return None

    # --- running git ---

    def _run_in_clone(self, *args: str) -> str:
        # An explicit --git-dir: git must never walk up from a damaged clone into an enclosing
        # repository and check out or clean there.
        command = ["git", *_SAFE_OPTIONS, f"--git-dir={self._clone / '.git'}", f"--work-tree={self._clone}", *args]
        return str(git.Git(self._clone).execute(command, env=self._env, kill_after_timeout=self._timeout))

    def _run_outside(self, *args: str) -> str:
        command = ["git", *_SAFE_OPTIONS, *args]
        return str(git.Git(self._cache_dir).execute(command, env=self._env, kill_after_timeout=self._timeout))


_REGULAR_MODES = (0o100644, 0o100755)
# What reading a commit's objects can raise. GitPython (3.1) reports an object the clone lacks (a
# commit pruned from the shallow clone, a damaged pack) as ValueError; gitdb's own ODBError is
# what its object databases raise when one is used in place of git's.
_READ_ERRORS = (GitError, ODBError, ValueError, OSError)


class GitFiles:
    """The files of one commit of a clone (see :class:`SourceFiles`), read from its objects.

    A commit never changes, so what was read once is kept: the source hands out the same object
    while its branch stays at one commit, and each file is read from Git once, not every tick.
    """

    def __init__(self, clone: Path, revision: str) -> None:
        self._clone = clone
        self.revision = revision
        self._listings: dict[str, list[str]] = {}
        self._contents: dict[str, FileContent | None] = {}

    def listing(self, folder: str) -> list[str]:
        if folder not in self._listings:
            self._listings[folder] = self._listing(folder)
        return list(self._listings[folder])

    def read(self, path: str) -> FileContent | None:
        if path not in self._contents:
            self._contents[path] = self._read(path)
        return self._contents[path]

    def _listing(self, folder: str) -> list[str]:
        with self._tree(folder) as tree:
            if tree is None or tree.type != "tree":
                return []
            return sorted(str(item.path) for item in tree.traverse()
                          if item.type == "blob" and item.mode in _REGULAR_MODES)

    def _read(self, path: str) -> FileContent | None:
        with self._tree(path) as item:
            if item is None or item.type != "blob" or item.mode not in _REGULAR_MODES:
                return None
            try:
                data = item.data_stream.read()
            except _READ_ERRORS as exc:
                raise SourceError(f"cannot read {path} at {self.revision[:12]}: {_error_text(exc)}") from exc
            return FileContent(data=data, executable=item.mode == 0o100755)

    @contextlib.contextmanager
    def _tree(self, path: str) -> Iterator[Any]:
        """The tree or blob at ``path`` in the commit ("" for its root), None when absent."""
        try:
            repo = git.Repo(self._clone)
        except (GitError, OSError) as exc:
            raise SourceError(f"cannot open the clone {self._clone}: {exc}") from exc
        try:
            try:
                root = repo.commit(self.revision).tree
                item = root / path if path else root
            except KeyError:
                item = None
            except _READ_ERRORS as exc:
                raise SourceError(f"cannot read {path} at {self.revision[:12]}: {_error_text(exc)}") from exc
            yield item
        finally:
            repo.close()


def _is_ref(parts: tuple[str, ...]) -> bool:
    # A push writes objects first and moves a ref last; only the ref means there is something new.
    return not parts or parts[0] in ("refs", "packed-refs", "HEAD")


def _check_branch(branch: str) -> None:
    # No leading '-' (it would read as an option); otherwise git's own rules for branch names.
    valid = not branch.startswith("-")
    if valid:
        try:
            git.Git().execute(["git", "check-ref-format", f"refs/heads/{branch}"])
        except (CommandError, OSError):
            valid = False
    if not valid:
        raise ValueError(f"{branch!r} is not a valid branch name")


def _error_text(exc: BaseException) -> str:
    """git's own message, on one line, without credentials."""
    raw = getattr(exc, "stderr", "") or ""
    match = re.match(r"\s*stderr: '(.*)'\s*$", raw, re.DOTALL)
    text = match.group(1) if match else raw or str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = " ".join(lines) or type(exc).__name__
    return redact(message[:1000])
