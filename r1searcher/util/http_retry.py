"""The retry timing every HTTP client here shares (judge, web search providers, page fetches):
jittered, capped exponential backoff, or the server's ``Retry-After`` when it sends one."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import httpx


def retry_after_seconds(resp: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    raw = resp.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for transient failures: ``backoff_s · 2^attempt`` (jittered, capped), or ``Retry-After``."""

    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, resp: httpx.Response | None) -> float:
        after = retry_after_seconds(resp) if resp is not None else None
        if after is not None:
            return min(after, self.max_retry_after_s)
        return min(self.max_backoff_s, self.backoff_s * (2**attempt)) * random.uniform(0.5, 1.0)
