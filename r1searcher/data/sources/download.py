"""Plain HTTPS downloads that resume: stream into ``FILE.part``, check, then rename to ``FILE``.

A cut connection is retried a few times from where it stopped (``Range: bytes=N-``, with
``If-Range`` so a file that changed on the server restarts from zero). When the retries run out,
``FILE.part`` and its ``FILE.part.json`` (url, ETag, size) stay next to ``FILE``: running the same
command again resumes from there. Nothing else is ever left behind: a size or sha256 mismatch
removes the partial file. ``$R1SEARCHER_DATA_MIRROR`` (a base URL) fetches
``https://HOST/PATH`` from ``MIRROR/HOST/PATH`` instead, as ``$HF_ENDPOINT`` does for the hub.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from r1searcher.util.files import write_atomic
from r1searcher.util.fingerprint import file_sha256 as sha256_file

MIRROR_ENV = "R1SEARCHER_DATA_MIRROR"
CHUNK = 1 << 20


class DataSourceError(RuntimeError):
    """A download or conversion that cannot go on; the message is one line saying what to do."""


@dataclass
class Fetched:
    """A downloaded file, its sha256 and size, the server's ETag and the hub commit (may be empty)."""

    path: Path
    sha256: str
    size: int
    etag: str = ""
    revision: str = ""


def mirrored(url: str) -> str:
    """``url`` as fetched: through ``$R1SEARCHER_DATA_MIRROR`` when it is set."""
    base = os.environ.get(MIRROR_ENV, "").rstrip("/")
    if not base:
        return url
    return f"{base}/{url.split('://', 1)[-1]}"


def one_line(e: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_meta(meta: Path) -> dict:
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}


def _progress(total: int | None, initial: int, name: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=None if sys.stderr.isatty() else True, file=sys.stderr)


def _one_attempt(client, url: str, part: Path, meta: Path) -> tuple[int | None, str]:
    """Stream ``url`` into ``part`` from its current size; return (total size or None, ETag)."""
    state = _read_meta(meta)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if state.get("etag"):
            headers["If-Range"] = state["etag"]
    with client.stream("GET", url, headers=headers) as r:
        if r.status_code == 416 and have and state.get("size") == have:
            return have, state.get("etag", "")  # already complete
        if r.status_code == 416:  # the partial file does not fit the file on the server: drop it
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            raise DataSourceError(f"HTTP 416 for {url}: removed a partial download that did not fit; run again")
        if r.status_code not in (200, 206):
            raise DataSourceError(f"HTTP {r.status_code} for {url}")
        etag = r.headers.get("ETag", "")
        if r.status_code == 200:
            have = 0  # the server ignored the range or the file changed: start over
            total = int(r.headers["Content-Length"]) if "Content-Length" in r.headers else None
        else:
            crange = r.headers.get("Content-Range", "")  # bytes START-END/TOTAL
            start = int(crange.split(" ", 1)[-1].split("-", 1)[0] or -1) if crange else -1
            if start != have:
                raise DataSourceError(f"{url}: the server answered a resume with the wrong range ({crange!r})")
            tail = crange.rsplit("/", 1)[-1]
            total = int(tail) if tail.isdigit() else None
        part.parent.mkdir(parents=True, exist_ok=True)  # only now: a failed connection leaves no folders
        write_atomic(meta, json.dumps({"url": url, "etag": etag, "size": total}))
        with open(part, "ab" if have else "wb") as f, _progress(total, have, part.name[:-5]) as bar:
            for chunk in r.iter_bytes():  # as it arrives: a fixed chunk size would lose the tail of a cut
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        return total, etag


def download(url: str, dest: Path, sha256: str = "", size: int | None = None, retries: int = 2,
             timeout: float = 30.0) -> Fetched:
    """Download ``url`` to ``dest`` (atomically; resumable through ``dest.part``), checked against
    ``sha256``/``size`` when given. Raises :class:`DataSourceError` with a one-line reason."""
    import httpx

    dest = Path(dest)
    part, meta = dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")
    fetch_url = mirrored(url)
    if part.exists() and _read_meta(meta).get("url") != fetch_url:
        part.unlink()  # a leftover from another address: not ours to resume
    by_hand = f"or download it by hand from {url} and save it as {dest}"
    total, etag, err = None, "", None
    with httpx.Client(follow_redirects=True, timeout=timeout) as client:
        for attempt in range(retries + 1):
            try:
                total, etag = _one_attempt(client, fetch_url, part, meta)
                err = None
                break
            except DataSourceError as e:
                raise DataSourceError(f"{e}; {by_hand}") from None
            except httpx.TransportError as e:
                err = e
                if attempt < retries and part.exists() and part.stat().st_size:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                break
    if err is not None:
        got = part.stat().st_size if part.exists() else 0
        reason = one_line(err)
        if got:
            raise DataSourceError(f"download of {fetch_url} stopped after {got} bytes ({reason}); the partial file "
                                  f"{part} is kept: run the same command again to resume, {by_hand}")
        meta.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        raise DataSourceError(f"cannot download {fetch_url} ({reason}); run the same command again when online, "
                              f"{by_hand}")
    got = part.stat().st_size
    want = size if size is not None else total
    if want is not None and got != want:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise DataSourceError(f"{fetch_url}: got {got} bytes, expected {want}; removed it, run again to retry")
    digest = sha256_file(part)
    if sha256 and digest != sha256:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise DataSourceError(f"{fetch_url}: sha256 {digest[:16]}… does not match the published {sha256[:16]}…; "
                              "refused and removed (a corrupt download or a changed file)")
    os.replace(part, dest)
    meta.unlink(missing_ok=True)
    return Fetched(dest, digest, got, etag)
