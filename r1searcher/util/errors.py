"""One line for an error the user can act on: what every command prints instead of a traceback."""

from __future__ import annotations


def describe_error(e: BaseException) -> str:
    """One line for an error the user can act on (an OSError names the file and the reason)."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        other = f" -> {e.filename2}" if getattr(e, "filename2", None) else ""
        return f"{e.filename}{other}: {e.strerror}"
    text = str(e).strip() or type(e).__name__
    lines = text.splitlines()
    return lines[0] + (" …" if len(lines) > 1 else "")
