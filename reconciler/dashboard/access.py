"""Who may approve from the dashboard: nobody unless the server was started with
``--allow-approve`` and a token file, and then whoever presents that token, as a bearer token
(``Authorization: Bearer TOKEN``, for the JSON endpoint) or as the approval form's ``token``
field.

Called by :mod:`reconciler.dashboard.server` on every approval request. The comparison takes the
same time whatever the presented token shares with the real one (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path


class TokenFileError(ValueError):
    """A token file that cannot serve: missing, unreadable or empty."""


@dataclass(frozen=True)
class ApprovePolicy:
    """Whether approving is on, and the token it needs (None: approving is off)."""

    token: str | None = None

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def allows(self, presented: str | None) -> bool:
        return token_matches(self.token, presented)


def read_token(path: Path) -> str:
    """The token in ``path``: its text without surrounding whitespace (a trailing newline is usual)."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc.strerror}") from exc
    if not token:
        raise TokenFileError(f"the token file {path} is empty")
    return token


def token_matches(expected: str | None, presented: str | None) -> bool:
    """Whether ``presented`` is the expected token; never when approving is off or nothing was presented."""
    if expected is None or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def presented_token(*, authorization: str | None, form_token: str | None) -> str | None:
    """The token a request presents: a bearer token in its Authorization header, else its form field."""
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return form_token or None
