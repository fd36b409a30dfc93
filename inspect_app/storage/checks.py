"""Argument checks the repositories share, so a naive datetime or a bad limit is refused in the same words."""

from __future__ import annotations

from datetime import datetime


def require_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes early, with the field name in the message."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware UTC datetime")


def check_limit(limit: int) -> None:
    """Reject non-positive limits, which SQL would treat inconsistently across backends."""
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit {limit!r} must be a positive integer")


__all__ = ["check_limit", "require_aware"]
