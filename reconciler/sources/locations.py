"""Where a source named on the command line lives: on this machine or behind a URL, and whether a
local folder is a Git repository. Plain path tests, no Git library: ``open_source`` decides with
them before it imports the Git source, so a folder of manifests starts without GitPython."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def local_repository(url: str) -> Path | None:
    """The repository's folder when ``url`` names one on this machine (a path or file:// URL)."""
    if SCHEME.match(url):
        parts = urlsplit(url)
        if parts.scheme.lower() == "file" and parts.netloc in ("", "localhost"):
            return Path(unquote(parts.path))
        return None
    # git's own rule: a colon before the first slash makes it scp-like ssh (git@host:org/repo).
    if ":" in url.split("/", 1)[0]:
        return None
    return Path(url).expanduser().absolute()


def is_bare_repository(path: Path) -> bool:
    # git's own test for a repository folder.
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def is_repository(path: Path) -> bool:
    """True for a bare repository or a working tree with a ``.git`` folder or file."""
    return is_bare_repository(path) or (path / ".git").exists()
