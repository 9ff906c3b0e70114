"""Schemathesis hooks of deploy/sdk-check.sh (loaded through SCHEMATHESIS_HOOKS).

Each hook keeps generated data inside a rule that JSON Schema cannot state, so that the
checks stay strict instead of excusing the status the rule produces.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import schemathesis

# Listings whose `from`/`to` bound one range.
RANGED = {
    "/v1/orgs/{orgId}/spend-logs",
    "/v1/orgs/{orgId}/spend-logs/stream",
    "/v1/orgs/{orgId}/decisions",
}


def _instant(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 date-time with an offset, else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return moment.timestamp() if moment.tzinfo is not None else None
    except (ValueError, OverflowError, OSError):
        return None


@schemathesis.hook("map_query")
def ordered_range(ctx: Any, query: Any) -> Any:
    """`from` after `to` is a 400 (the range is empty); the two are related, so the
    schema cannot say it: swap them, and the rest of the query is still checked."""
    if ctx.operation is None or ctx.operation.path not in RANGED or not isinstance(query, dict):
        return query
    low, high = _instant(query.get("from")), _instant(query.get("to"))
    if low is not None and high is not None and low > high:
        return {**query, "from": query["to"], "to": query["from"]}
    return query
