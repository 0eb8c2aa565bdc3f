"""A request body read from raw ASGI messages and parsed as one JSON object, within a byte limit.

Shared by the retrieval server (``retrieval/server.py``) and the agent service (``agent/app.py``):
each passes ``error(message, status)``, which builds the 4xx exception its app turns into a reply.
"""

from __future__ import annotations

import json
from collections.abc import Callable

Error = Callable[[str, int], Exception]


class ClientGone(Exception):
    """The client hung up before its request body arrived (nobody to answer; not a server error)."""


async def read_body(scope: dict, receive, limit: int, error: Error) -> bytes:
    """The request body, refused (413) from its Content-Length before reading, or as soon as a
    chunked stream passes ``limit``: never more than ``limit`` bytes are held."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = value.decode("latin-1")
            break
    if declared is not None:
        if not declared.strip().isdigit():
            raise error(f"invalid Content-Length header {declared[:40]!r}", 400)
        if int(declared) > limit:
            raise error(f"request body is {int(declared)} bytes; the limit is {limit}", 413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise error(f"request body is over {limit} bytes (the limit); stopped reading at {size}", 413)
        if not message.get("more_body", False):
            if not chunks:  # the usual case: the whole body in one message
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def parse_json_object(raw: bytes, limit: int, error: Error) -> dict:
    """``raw`` as a JSON object: 413 over ``limit`` bytes, 400 when it is not JSON or not an object."""
    if len(raw) > limit:
        raise error(f"request body is {len(raw)} bytes; the limit is {limit}", 413)
    try:
        body = json.loads(raw)
    except RecursionError:
        raise error("invalid JSON: nested too deeply", 400) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer over Python's digit limit
        raise error(f"invalid JSON: {str(e).splitlines()[0][:200]}", 400) from None
    if not isinstance(body, dict):
        raise error(f"the body must be a JSON object, got {type(body).__name__}", 400)
    return body
