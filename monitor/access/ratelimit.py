"""Per-token rate limit on rows logged or predicted, counted in fixed one-minute windows in the database.

The database, not Redis, holds the counters: every gunicorn worker sees the same count, and ingestion keeps
its limit while the broker is down. The charge is its own short statement before the batch is stored, so a
slow COPY never holds the counter row locked. A fixed window lets a client send up to twice its limit across
a window boundary; that is the price of one upsert per request.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.utils import timezone

from monitor.models import ApiToken, ClientUsage, TokenUsage

WINDOW = timedelta(minutes=1)


@dataclass
class RateLimited(Exception):
    limit: int
    retry_after: int
    too_large: bool = False

    def __str__(self) -> str:
        if self.too_large:
            return (f"this request holds more rows than the token's limit of {self.limit:,} per minute; "
                    "split it into smaller batches")
        return (f"rate limit reached: this token may send {self.limit:,} rows per minute; "
                f"retry after {self.retry_after} s")


def limit_of(token: ApiToken) -> int:
    return token.queries_per_minute if token.queries_per_minute is not None else settings.TOKEN_QUERIES_PER_MINUTE


def window_of(now: datetime) -> tuple[datetime, int]:
    """The one-minute window `now` falls in, and the seconds until the next one (at least 1)."""
    window_start = now.replace(second=0, microsecond=0)
    return window_start, max(1, math.ceil((window_start + WINDOW - now).total_seconds()))


def add_to_window(usage: type[models.Model], owner: Mapping[str, Any], window_start: datetime, rows: int,
                  limit: int) -> bool:
    """Add `rows` to the owner's count for the window if it stays within `limit`; False (nothing counted) if not.

    `usage` is a table with (the `owner` columns..., window_start) unique and a `queries` count (TokenUsage,
    RestrictionUsage, ClientUsage); `owner` maps those columns to their values. One atomic statement: no row back
    means refused.
    """
    table = usage._meta.db_table
    columns = [*owner, "window_start"]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}, queries) VALUES ({', '.join(['%s'] * (len(columns) + 1))}) "  # noqa: S608 (our names)  # nosec B608
            f"ON CONFLICT ({', '.join(columns)}) DO UPDATE SET queries = {table}.queries + EXCLUDED.queries "
            f"WHERE {table}.queries + EXCLUDED.queries <= %s RETURNING queries",
            [*owner.values(), window_start, rows, limit],
        )
        return cursor.fetchone() is not None


def charge(token: ApiToken, rows: int, *, now: datetime | None = None) -> None:
    """Count `rows` (at least 1) against the token's current window, or raise RateLimited and count nothing."""
    limit = limit_of(token)
    if limit <= 0:
        return
    rows = max(1, rows)
    window_start, retry_after = window_of(now or timezone.now())
    if rows > limit:
        raise RateLimited(limit=limit, retry_after=retry_after, too_large=True)
    if not add_to_window(TokenUsage, {"token_id": token.pk}, window_start, rows, limit):
        raise RateLimited(limit=limit, retry_after=retry_after)


def prune_usage(*, older_than: timedelta = timedelta(hours=1)) -> int:
    """Drop the tokens' and the per-client throttle's spent windows (a day's window once it is two days old)."""
    now = timezone.now()
    return (TokenUsage.objects.filter(window_start__lt=now - older_than).delete()[0]
            + ClientUsage.objects.filter(span=ClientUsage.MINUTE, window_start__lt=now - older_than).delete()[0]
            + ClientUsage.objects.filter(span=ClientUsage.DAY, window_start__lt=now - timedelta(days=2)).delete()[0])
