"""How the store writes times and JSON as text.

Used by the store (``reconciler.store.database``) and by the array outcomes it keeps in its rows
(``reconciler.store.array_outcomes``), so both write the same forms. It guarantees that a time is
ISO-8601 UTC text of fixed width (always microseconds), so the text sorts as the times do, and
comes back as a timezone-aware datetime; a naive datetime is refused. JSON written with
``canonical_json`` has sorted keys and no spaces, so equal values give equal text. Pure.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the store keeps UTC times only")
    # Fixed width (always microseconds) so the text sorts as the times do.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


def from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
