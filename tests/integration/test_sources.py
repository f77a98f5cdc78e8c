"""The sources against real Git: a bare repository in tmp_path, and a working clone that commits and
pushes into it, exactly as a user would; plus the directory source on a real file system and the
webhook receiver over real HTTP. Needs only the git CLI (an SSH remote is tested when
RECONCILER_TEST_GIT_SSH_URL names one).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.sources import DirectorySource, SourceError, open_source
from reconciler.sources.git import GitSource, redact
from reconciler.sources.webhook import WebhookReceiver

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI"),
]

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


def workflow(name: str, *, task: str = "a") -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata:
  name: {name}
spec:
  tasks:
    - name: {task}
      script: echo {task}
"""


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass
class Remote:
    """A bare repository and a working clone of it that pushes."""

    bare: Path
    work: Path

    def push(self, files: Mapping[str, str | None], *, branch: str = "main", message: str = "update") -> str:
        """Writes (or, for None, deletes) ``files``, commits, pushes ``branch``; returns the commit."""
        if git("branch", "--list", branch, cwd=self.work):
            git("switch", "-q", branch, cwd=self.work)
        else:
            git("switch", "-q", "-c", branch, cwd=self.work)
        for name, text in files.items():
            target = self.work / name
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", branch, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


def make_remote(bare: Path, work: Path) -> Remote:
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=bare.parent)
    git("clone", "-q", str(bare), str(work), cwd=bare.parent)
    git("switch", "-q", "-c", "main", cwd=work)
    return Remote(bare=bare, work=work)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return make_remote(tmp_path / "plans.git", tmp_path / "work")


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[Callable[..., GitSource]]:
    """Opens Git sources with a cache in tmp_path, and closes them after the test."""
    opened: list[GitSource] = []

    def open_git(url: str, **options: str | None) -> GitSource:
        source = GitSource(url, cache_dir=tmp_path / "cache", **options)  # type: ignore[arg-type]
        opened.append(source)
        return source

    yield open_git
    for source in opened:
        source.close()


def names(source: GitSource | DirectorySource) -> list[str]:
    return sorted(r.resource.metadata.name for r in source.read().load.resources)


def watching(source: GitSource | DirectorySource) -> None:
    """Takes the ring a watch gives once it is in place (the tick it starts reads whatever changed
    before), so that the next ring a test waits for is its own change's."""
    assert source.wait(5) is True


def url_of(remote: Remote, kind: str) -> str:
    return remote.bare.as_uri() if kind == "file" else str(remote.bare)


# --- Git: reading ---


@pytest.mark.parametrize("kind", ["file", "path"])
def test_reads_each_pushed_revision(remote: Remote, sources: Callable[..., GitSource], tmp_path: Path, kind: str):
    first = remote.push({"plans/chain.yaml": workflow("chain"), "README.md": "not a manifest"})
    source = sources(url_of(remote, kind))

    snapshot = source.read()
    assert snapshot.revision == first
    assert snapshot.files == ("plans/chain.yaml",)
    assert snapshot.load.errors == []
    [loaded] = snapshot.load.resources
    assert loaded.key == ("Workflow", "default", "chain")
    assert loaded.location.file == "plans/chain.yaml"  # relative to the repository, not the clone

    second = remote.push({"plans/chain.yaml": None, "plans/fan.yaml": workflow("fan", task="b")})
    snapshot = source.read()
    assert snapshot.revision == second != first
    assert snapshot.files == ("plans/fan.yaml",)
    assert [r.resource.spec.tasks[0].name for r in snapshot.load.resources] == ["b"]

    # Its own clone, hooks-free, and the remote's URL not stored in it.
    [clone] = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert clone.name.startswith("git-")
    assert not (clone / ".git" / "hooks").exists()
    assert str(remote.bare) not in (clone / ".git" / "config").read_text()


def test_a_push_wakes_wait_within_a_second(remote: Remote, sources: Callable[..., GitSource]):
    remote.push({"plans/chain.yaml": workflow("chain")})
    source = sources(str(remote.bare))
    source.read()
    watching(source)

    started = time.monotonic()
    assert source.wait(0.6) is False
    assert time.monotonic() - started >= 0.55

    pushed_at: list[float] = []
    pusher = threading.Thread(target=lambda: (
        time.sleep(0.2), remote.push({"plans/b.yaml": workflow("b")}), pushed_at.append(time.monotonic()),
    ))
    pusher.start()
    assert source.wait(10) is True
    woke_at = time.monotonic()
    pusher.join()
    # The ref is written last, so the wake may even come before `git push` itself has exited.
    assert woke_at - pushed_at[0] < 3.0
    assert names(source) == ["b", "chain"]
    assert source.wait(0.6) is False  # one push, one wake


def test_a_push_wakes_wait_through_a_file_url(remote: Remote, sources: Callable[..., GitSource]):
    remote.push({"plans/chain.yaml": workflow("chain")})
    source = sources(remote.bare.as_uri())
    source.read()
    threading.Timer(0.2, lambda: remote.push({"plans/b.yaml": workflow("b")})).start()
    started = time.monotonic()
    assert source.wait(10) is True
    assert time.monotonic() - started < 3.2


def test_path_selects_a_sub_folder(remote: Remote, sources: Callable[..., GitSource]):
    remote.push({"plans/a.yaml": workflow("a"), "other/b.yaml": workflow("b"), "c.yaml": workflow("c")})
    snapshot = sources(str(remote.bare), path="plans").read()
    assert snapshot.files == ("plans/a.yaml",)
    assert [r.location.file for r in snapshot.load.resources] == ["plans/a.yaml"]

    with pytest.raises(SourceError, match="missing does not exist"):
        sources(str(remote.bare), path="missing").read()
    with pytest.raises(ValueError, match="inside"):
        sources(str(remote.bare), path="../elsewhere")


def test_branch_selection_and_the_remote_default_branch(remote: Remote, sources: Callable[..., GitSource]):
    main = remote.push({"plans/a.yaml": workflow("on-main")})
    staging = remote.push({"plans/a.yaml": workflow("on-staging")}, branch="staging")

    assert sources(str(remote.bare), branch="staging").read().revision == staging
    assert names(sources(str(remote.bare), branch="main")) == ["on-main"]
    assert sources(str(remote.bare)).read().revision == main  # the remote's HEAD names main

    git("symbolic-ref", "HEAD", "refs/heads/staging", cwd=remote.bare)
    assert names(sources(str(remote.bare))) == ["on-staging"]

    with pytest.raises(SourceError, match="branch 'nope' not found"):
        sources(str(remote.bare), branch="nope").read()
    with pytest.raises(ValueError, match="not a valid branch"):
        sources(str(remote.bare), branch="--upload-pack=touch")


def test_a_broken_file_is_reported_with_its_relative_name_and_line(remote: Remote, sources: Callable[..., GitSource]):
    remote.push({
        "plans/good.yaml": workflow("good"),
        "plans/bad.yaml": "apiVersion: hpc.reconciler.dev/v1alpha1\nkind: [unclosed\n",
        "plans/invalid.yaml": workflow("Not_Valid"),
    })
    snapshot = sources(str(remote.bare)).read()
    assert snapshot.files == ("plans/bad.yaml", "plans/good.yaml", "plans/invalid.yaml")
    assert [r.resource.metadata.name for r in snapshot.load.resources] == ["good"]
    syntax, schema = snapshot.load.errors
    assert (syntax.file, syntax.line) == ("plans/bad.yaml", 3) and "invalid YAML" in syntax.message
    assert str(schema).startswith("plans/invalid.yaml:4: metadata.name: ")
    [_, named] = snapshot.load.broken
    assert (named.kind, named.name) == ("Workflow", "Not_Valid")


def test_symlinks_in_the_repository_are_not_followed(remote: Remote, sources: Callable[..., GitSource],
                                                     tmp_path: Path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(workflow("secret"))
    (remote.work / "plans").mkdir()
    (remote.work / "plans" / "link.yaml").symlink_to(outside)
    remote.push({"plans/real.yaml": workflow("real")})
    snapshot = sources(str(remote.bare)).read()
    assert [r.resource.metadata.name for r in snapshot.load.resources] == ["real"]
    [broken] = snapshot.load.broken
    assert broken.errors[0].file == "plans/link.yaml"


# --- Git: failures ---


def test_an_unreachable_repository_is_a_source_error_until_it_comes_back(tmp_path: Path,
                                                                         sources: Callable[..., GitSource]):
    bare = tmp_path / "later.git"
    source = sources(str(bare))
    with pytest.raises(SourceError) as failure:
        source.read()
    assert "later.git" in str(failure.value) and "does not appear to be a git repository" in str(failure.value)

    later = make_remote(bare, tmp_path / "work")
    sha = later.push({"plans/a.yaml": workflow("a")})
    assert source.wait(5) is True  # the watch starts once the repository exists
    assert source.read().revision == sha


def test_credentials_never_appear_in_errors_or_descriptions(sources: Callable[..., GitSource]):
    source = sources("https://ada:s3cr3t-token@127.0.0.1:1/plans.git", branch="main")
    assert "s3cr3t" not in source.description
    with pytest.raises(SourceError) as failure:
        source.read()
    assert "127.0.0.1" in str(failure.value) and "s3cr3t" not in str(failure.value)
    assert redact("ssh://git:pw@host/x and https://tok@host/y") == "ssh://git:***@host/x and https://***@host/y"


def _garbage_head(clone: Path) -> None:
    (clone / ".git" / "HEAD").write_text("garbage\n")


def _no_objects(clone: Path) -> None:
    shutil.rmtree(clone / ".git" / "objects")


def _no_git_dir(clone: Path) -> None:
    shutil.rmtree(clone / ".git")


def _a_file(clone: Path) -> None:
    shutil.rmtree(clone)
    clone.write_text("not a clone")


def _missing_commit(clone: Path) -> None:
    # The refs still name the commit, but its objects are gone: only fetch or checkout notice.
    for pack in (clone / ".git" / "objects").rglob("*"):
        if pack.is_file():
            pack.chmod(0o644)
            pack.unlink()


def _bad_shallow(clone: Path) -> None:
    # The remote answers, yet the fetch fails: the clone is to blame.
    (clone / ".git" / "shallow").write_text("garbage\n")


@pytest.mark.parametrize("damage", [_garbage_head, _no_objects, _no_git_dir, _a_file, _missing_commit, _bad_shallow],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_clone_is_cloned_again(remote: Remote, sources: Callable[..., GitSource], tmp_path: Path,
                                         damage: Callable[[Path], None]):
    sha = remote.push({"plans/a.yaml": workflow("a")})
    source = sources(str(remote.bare))
    source.read()
    [clone] = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("git-") and p.is_dir()]
    damage(clone)
    snapshot = source.read()
    assert snapshot.revision == sha and snapshot.files == ("plans/a.yaml",)


def test_local_edits_in_the_clone_are_undone(remote: Remote, sources: Callable[..., GitSource], tmp_path: Path):
    remote.push({"plans/a.yaml": workflow("a")})
    source = sources(str(remote.bare))
    source.read()
    [clone] = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    (clone / "plans" / "a.yaml").write_text(workflow("tampered"))
    (clone / "plans" / "extra.yaml").write_text(workflow("extra"))
    snapshot = source.read()
    assert snapshot.files == ("plans/a.yaml",)
    assert [r.resource.metadata.name for r in snapshot.load.resources] == ["a"]


@pytest.mark.skipif(not os.environ.get("RECONCILER_TEST_GIT_SSH_URL"), reason="set RECONCILER_TEST_GIT_SSH_URL")
def test_an_ssh_remote(sources: Callable[..., GitSource]):
    url = os.environ["RECONCILER_TEST_GIT_SSH_URL"]
    snapshot = sources(url, branch=os.environ.get("RECONCILER_TEST_GIT_SSH_BRANCH")).read()
    assert snapshot.revision is not None and len(snapshot.revision) == 40


# --- waking ---


@pytest.mark.parametrize("kind", ["directory", "remote git"])
def test_wake_ends_a_blocked_wait_at_once(tmp_path: Path, kind: str):
    source = (
        DirectorySource(tmp_path) if kind == "directory"
        else GitSource("https://127.0.0.1:1/plans.git", branch=None, path=None, cache_dir=tmp_path / "cache")
    )
    try:
        if kind == "directory":
            watching(source)
        threading.Timer(0.2, source.wake).start()
        started = time.monotonic()
        assert source.wait(30) is True
        assert time.monotonic() - started < 2.0
        assert source.wait(0.1) is False  # one wake, one return
    finally:
        source.close()


def test_wake_from_a_signal_handler(tmp_path: Path):
    source = DirectorySource(tmp_path)
    previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: source.wake())
    try:
        watching(source)
        threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        assert source.wait(30) is True
        assert time.monotonic() - started < 2.0
    finally:
        signal.signal(signal.SIGUSR1, previous)
        source.close()


# --- directory ---


def test_directory_source_sees_an_edit_at_once(tmp_path: Path):
    root = tmp_path / "repo"
    (root / "plans").mkdir(parents=True)
    (root / "plans" / "a.yaml").write_text(workflow("a"))
    (root / "other.yaml").write_text(workflow("other"))
    source = DirectorySource(root, path="plans")
    try:
        snapshot = source.read()
        assert snapshot.revision is None and snapshot.files == ("plans/a.yaml",)
        watching(source)
        assert source.wait(0.3) is False

        threading.Timer(0.2, lambda: (root / "plans" / "b.yaml").write_text(workflow("b"))).start()
        started = time.monotonic()
        assert source.wait(10) is True
        assert time.monotonic() - started < 3.0
        assert names(source) == ["a", "b"]
        assert source.wait(0.6) is False  # one save, one wake

        # Files the loader skips do not wake it either.
        (root / "plans" / ".hidden.yaml").write_text("x: 1")
        (root / "plans" / "a.yaml.swp").write_text("x")
        assert source.wait(0.8) is False
    finally:
        source.close()


def test_the_first_read_does_not_wait_for_the_watch_and_misses_nothing(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(workflow("a"))
    source = DirectorySource(tmp_path)
    try:
        assert names(source) == ["a"]
        # Written at once: the watch may not be in place yet, and its ring makes the loop read again.
        (tmp_path / "b.yaml").write_text(workflow("b"))
        assert source.wait(5) is True
        assert names(source) == ["a", "b"]
    finally:
        source.close()


def test_directory_source_errors(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("kind: [\n")
    source = DirectorySource(tmp_path)
    missing = DirectorySource(tmp_path / "gone")
    try:
        [error] = source.read().load.errors
        assert error.file == "bad.yaml"
        with pytest.raises(SourceError, match="does not exist"):
            missing.read()
    finally:
        source.close()
        missing.close()


def test_directory_source_of_a_single_file(tmp_path: Path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(workflow("one"))
    (tmp_path / "unrelated.yaml").write_text(workflow("two"))
    source = DirectorySource(plan)
    try:
        assert source.read().files == ("plan.yaml",)
        watching(source)
        threading.Timer(0.2, lambda: plan.write_text(workflow("uno"))).start()
        assert source.wait(10) is True
        assert names(source) == ["uno"]
    finally:
        source.close()


def test_open_source_chooses_by_what_the_source_is(remote: Remote, tmp_path: Path):
    cache = tmp_path / "cache"
    remote.push({"plans/a.yaml": workflow("a")})
    opened = [
        open_source(str(remote.bare), cache_dir=cache),
        open_source(remote.bare.as_uri(), cache_dir=cache),
        open_source("ssh://git@example.org/plans.git", cache_dir=cache),
        open_source("git@example.org:org/plans.git", cache_dir=cache),
        open_source(str(remote.work), branch="main", cache_dir=cache),
        open_source(str(remote.work), cache_dir=cache),  # a working tree is read as it is on disk
    ]
    try:
        assert [type(s).__name__ for s in opened] == ["GitSource"] * 5 + ["DirectorySource"]
        with pytest.raises(ValueError, match="not a Git repository"):
            open_source(str(tmp_path / "plain"), branch="main", cache_dir=cache)
    finally:
        for source in opened:
            source.close()


# --- webhook ---


@pytest.fixture
def receiver() -> Iterator[tuple[WebhookReceiver, list[float]]]:
    pushes: list[float] = []
    server = WebhookReceiver(host="127.0.0.1", port=0, on_push=lambda: pushes.append(time.monotonic()),
                             secret="hunter2")
    server.start()
    yield server, pushes
    server.stop()


def request(port: int, method: str, path: str, *, body: bytes = b"", headers: Mapping[str, str] | None = None,
            ) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_webhook_accepts_signed_pushes(receiver: tuple[WebhookReceiver, list[float]]):
    server, pushes = receiver
    body = b'{"ref": "refs/heads/main"}'
    signature = "sha256=" + hmac.new(b"hunter2", body, hashlib.sha256).hexdigest()
    assert request(server.port, "POST", "/hook", body=body, headers={"X-Hub-Signature-256": signature})[0] == 202
    assert request(server.port, "POST", "/hook/gitlab", body=body, headers={"X-Gitlab-Token": "hunter2"})[0] == 202
    assert len(pushes) == 2


def test_webhook_rejects_what_it_should(receiver: tuple[WebhookReceiver, list[float]]):
    server, pushes = receiver
    body = b"{}"
    forged = "sha256=" + hmac.new(b"wrong", body, hashlib.sha256).hexdigest()
    assert request(server.port, "POST", "/hook", body=body, headers={"X-Hub-Signature-256": forged})[0] == 401
    assert request(server.port, "POST", "/hook", body=body, headers={"X-Gitlab-Token": "hunter3"})[0] == 401
    assert request(server.port, "POST", "/hook", body=body)[0] == 401
    assert request(server.port, "GET", "/healthz") == (200, "ok\n")
    assert request(server.port, "GET", "/hook")[0] == 404
    assert request(server.port, "POST", "/elsewhere", body=body)[0] == 404
    assert request(server.port, "DELETE", "/hook")[0] == 404

    # Too large: answered from the headers alone, before any of the body is sent.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.putrequest("POST", "/hook")
    connection.putheader("Content-Length", str(2 * 1024 * 1024))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    assert pushes == []


def test_webhook_wakes_a_waiting_source(tmp_path: Path):
    source = GitSource("https://127.0.0.1:1/plans.git", branch=None, path=None, cache_dir=tmp_path / "cache")
    server = WebhookReceiver(host="127.0.0.1", port=0, on_push=source.wake, secret=None)
    server.start()
    try:
        threading.Timer(0.2, lambda: request(server.port, "POST", "/hook", body=b"{}")).start()
        started = time.monotonic()
        assert source.wait(30) is True
        assert time.monotonic() - started < 2.0
    finally:
        server.stop()
        source.close()
