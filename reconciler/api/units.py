"""Slurm's time and memory notations: validation patterns and exact conversions.

Used by the models (to reject malformed requests at load time) and by retry escalation (to
multiply a request and write it back in Slurm's own notation).
"""

from __future__ import annotations

import math
import re

# Slurm --time accepts: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
TIME_PATTERN = r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}|\d+-\d{1,2}:\d{1,2}|\d+-\d{1,2}:\d{1,2}:\d{1,2})$"
# Slurm --mem: an integer with an optional unit suffix; no suffix means megabytes.
MEMORY_PATTERN = r"^\d+[KMGTkmgt]?$"
# The same, or "auto": the Orchestrator chooses the value.
AUTO_OR_TIME_PATTERN = rf"^(auto|{TIME_PATTERN[1:-1]})$"
AUTO_OR_MEMORY_PATTERN = rf"^(auto|{MEMORY_PATTERN[1:-1]})$"

_MEMORY_FACTORS_MIB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def time_to_seconds(value: str) -> int:
    """Seconds in a Slurm time limit string."""
    if not re.match(TIME_PATTERN, value):
        raise ValueError(f"invalid Slurm time {value!r}")
    days = 0
    if "-" in value:
        day_part, value = value.split("-", 1)
        days = int(day_part)
        parts = [int(p) for p in value.split(":")]
        hours, minutes, seconds = ([*parts, 0, 0])[:3]
    else:
        parts = [int(p) for p in value.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def seconds_to_time(seconds: float) -> str:
    """Slurm's D-HH:MM:SS notation, rounded up to whole minutes (Slurm's own granularity)."""
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    clock = f"{hours:02d}:{mins:02d}:00"
    return f"{days}-{clock}" if days else clock


def memory_to_mib(value: str) -> float:
    """Megabytes (Slurm's MiB) in a memory request."""
    if not re.match(MEMORY_PATTERN, value):
        raise ValueError(f"invalid Slurm memory {value!r}")
    unit = value[-1].upper()
    if unit.isdigit():
        return float(value)
    return int(value[:-1]) * _MEMORY_FACTORS_MIB[unit]


def mib_to_memory(mib: float) -> str:
    """The smallest whole-megabyte request that covers ``mib``."""
    whole = max(1, math.ceil(mib))
    if whole % 1024 == 0:
        return f"{whole // 1024}G"
    return f"{whole}M"
