"""Write the viewer: one HTML file with its data, CSS and JavaScript inside (no server, no CDN).

Rows are embedded as JSON in a ``<script type="application/json">`` element and rendered by the
page a screenful at a time (50 rows a page; a trajectory's response is built only when opened),
so 10k trajectories load in about a second. Above :data:`COMPRESS_ABOVE` bytes the JSON is
gzipped and base64-encoded (the browser's own ``DecompressionStream`` inflates it): a run's
responses repeat the same documents, so the page shrinks several-fold.

Plain JSON is written with ``<``, ``>``, ``&`` and U+2028/2029 as ``\\uXXXX`` escapes, so no text in a
trajectory can end the element early (``</script>``) or put the HTML parser in a state where the
real ``</script>`` no longer ends it (``<!--<script>``). The page's script escapes everything it
shows, numbers included.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import time
from collections.abc import Callable
from pathlib import Path

from r1searcher.rollout import tags
from r1searcher.viewer.assets import CSS, JS
from r1searcher.viewer.records import load_rows

COMPRESS_ABOVE = 1_000_000  # bytes of JSON
# JSON text never holds these outside a string, and inside one the escape reads back as the character
SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})
TAGS = {"think_open": tags.THINK_OPEN, "think_close": tags.THINK_CLOSE, "answer_open": tags.ANSWER_OPEN,
        "answer_close": tags.ANSWER_CLOSE, "query_open": tags.QUERY_OPEN, "query_close": tags.QUERY_CLOSE,
        "docs_open": tags.DOCS_OPEN, "docs_close": tags.DOCS_CLOSE}


def default_out(paths: list[str | Path]) -> Path:
    """``DIR/viewer.html`` for one folder, else ``runs/viewer.html``."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0]) / "viewer.html"
    return Path("runs/viewer.html")


def render_html(runs: list[dict], rows: list[dict], title: str, compress: bool | None = None) -> str:
    """The page's text. ``compress``: None = gzip when the JSON is over COMPRESS_ABOVE bytes."""
    payload = {"meta": {"title": title, "generated": time.strftime("%Y-%m-%d %H:%M"), "runs": runs, "tags": TAGS},
               "rows": rows}
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if compress is None:
        compress = len(data.encode()) > COMPRESS_ABOVE
    if compress:
        body, enc = base64.b64encode(gzip.compress(data.encode(), 6, mtime=0)).decode(), "gzip-base64"
    else:
        body, enc = data.translate(SCRIPT_SAFE), "json"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f'<header><h1>{html.escape(title)}</h1><div class="tabs" id="tabs"></div><div class="runs" id="runs"></div></header>'
            f'<div id="issues"></div><div id="filters"></div><div id="summary">loading…</div><div id="main"></div>'
            f'<script id="data" type="application/json" data-encoding="{enc}">{body}</script>'
            f"<script>{JS}</script></body></html>\n")


def write_viewer(paths: list[str | Path], out: str | Path | None = None, title: str | None = None,
                 compress: bool | None = None, warn: Callable[[str], None] | None = None) -> Path:
    """Find the runs under ``paths``, write the page, return its path.

    ``warn`` is called with each problem found in the runs' files (damaged lines, bad values); the
    page shows them too.
    """
    runs, rows = load_rows(paths)
    for issue in (i for run in runs for i in run["issues"]) if warn else ():
        warn(issue)
    out = Path(out) if out else default_out(paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = title or "r1searcher trajectories: " + ", ".join(Path(p).resolve().name for p in paths)
    out.write_text(render_html(runs, rows, title, compress), encoding="utf-8")
    return out
