"""Secrets out of what is shown: URLs with ``user:password@`` or key/token query parameters, and
known secret values inside messages. Used by ``/health``, logs, error messages and config dumps of
web search, whose base URLs may carry credentials (``R1SEARCHER_WEB_BASE_URL=https://u:p@host``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
#: Query parameters whose values are secrets (``?api_key=…``, ``&token=…``, ``&sig=…``).
_SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.I)
#: ``scheme://userinfo@`` anywhere in a text.
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/\s@?#]+)@", re.I)


def redact_url(url: str | None) -> str | None:
    """``url`` with its user info replaced by ``***`` and secret-looking query values masked."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(_SECRET_PARAM.search(k) for k, _ in pairs):
                query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not parsable as a URL: mask what looks like user info
        return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", url)


def url_secrets(url: str | None) -> list[str]:
    """The secret values inside ``url`` (its password, user name, secret query values), to be
    masked wherever they might be echoed."""
    if not url:
        return []
    out: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            out.append(parts.password)
            out.append(unquote(parts.password))
        if parts.username:
            out.append(parts.username)
        out += [v for k, v in parse_qsl(parts.query) if _SECRET_PARAM.search(k) and v]
    except ValueError:
        pass
    return out


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret value (of 4 characters or more) and every URL user info masked."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
