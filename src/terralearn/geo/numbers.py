"""JSON-safe numbers (pure): metrics and statistics write NaN and infinities as null."""

from __future__ import annotations

import math


def finite(value: object) -> float | None:
    """``value`` as a float, or None when it is missing, not a number (booleans included), NaN or infinite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
