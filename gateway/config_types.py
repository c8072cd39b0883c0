"""Value types shared by the gateway's and the connectors' configuration models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from 90, "90s", "15m", "2h" or "1d"."""
    if isinstance(value, bool):
        raise ValueError('a duration is a number of seconds or a string like "15m"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        raise ValueError(
            f'{value!r} is not a duration: use seconds or a string like "90s", "15m", "2h"'
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are taken from the configuration file's folder, not the process's."""
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return Path(base) / value
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
#: A duration that must be longer than zero (intervals, timeouts).
PositiveDuration = Annotated[Duration, Field(gt=0)]
ConfigPath = Annotated[Path, AfterValidator(resolve_path)]
