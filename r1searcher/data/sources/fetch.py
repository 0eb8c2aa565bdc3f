"""``data get`` / ``data list``: fetch a known data set, convert it, record it in ``manifest.json``.

Layout under the data root (``paths.data_root()`` or ``--out``)::

    eval/<name>.jsonl  train/<name>.jsonl     QA files, found by name by resolve_dataset
    corpus/<name>.jsonl                       passage corpora {id, title, text}
    downloads/<host or hub repo>/…/<file>     raw plain-HTTPS downloads (and *.part while one is
                                              unfinished); also where a hand-downloaded copy goes
    downloads/manifest.json                   what was fetched: source, sha256, size, records

Hub files stay in the hub cache (``$HF_HOME``). A data set whose output is present with the size the
manifest recorded is not fetched again (``--force`` converts again, re-downloading plain files).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from r1searcher.data.sources.download import DataSourceError, Fetched, download, sha256_file
from r1searcher.data.sources.registry import REGISTRY, Entry
from r1searcher.util.files import write_atomic

MANIFEST = "downloads/manifest.json"  # under downloads/, which resolve_dataset does not search


def data_dir(out: str | os.PathLike[str] | None = None) -> Path:
    """``out`` when given, else the project's data root."""
    from r1searcher.paths import data_root

    return Path(out).expanduser() if out else data_root()


def by_hand_path(root: Path, entry: Entry) -> Path:
    """Where the raw file goes (plain downloads), or where a hand-downloaded copy is looked for."""
    src = entry.source
    return root / "downloads" / src.key / src.filename


def read_manifest(root: Path) -> dict:
    try:
        man = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        man = {}
    except ValueError as e:
        raise DataSourceError(f"{root / MANIFEST}: not valid JSON ({e}); fix or delete it") from None
    man.setdefault("data", {})
    man.setdefault("sources", {})
    return man


def write_manifest(root: Path, man: dict) -> None:
    path = root / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(man, indent=1, sort_keys=True) + "\n")


def _plain(entry: Entry, root: Path, man: dict, force: bool) -> Fetched:
    src, dest = entry.source, by_hand_path(root, entry)
    seen = man["sources"].get(src.url, {})
    if dest.is_file() and not force:
        digest = sha256_file(dest)
        want = src.sha256 or seen.get("sha256", "")
        if want and digest != want:
            raise DataSourceError(f"{dest}: sha256 {digest[:16]}… is not the expected {want[:16]}… of {src.url}; "
                                  "delete it and run again")
        return Fetched(dest, digest, dest.stat().st_size, seen.get("etag", ""))
    dest.unlink(missing_ok=True)
    got = download(src.url, dest, sha256=src.sha256, size=src.size)
    if not src.sha256 and seen.get("sha256") and seen.get("etag") == got.etag and seen["sha256"] != got.sha256:
        dest.unlink()
        raise DataSourceError(f"{src.url}: same ETag as the first download but sha256 {got.sha256[:16]}… differs from the "
                              f"recorded {seen['sha256'][:16]}…; refused and removed (a corrupt download?)")
    return got


def fetch_raw(entry: Entry, root: Path, man: dict, force: bool = False, revision: str = "main") -> Fetched:
    """The raw file of ``entry``, downloaded and checked (hash recorded in ``man['sources']``)."""
    src = entry.source
    if src.on_hub:
        hand = by_hand_path(root, entry)
        if hand.is_file():  # a copy downloaded by hand (offline); only its size can be checked
            if src.size is not None and hand.stat().st_size != src.size:
                raise DataSourceError(f"{hand}: {hand.stat().st_size} bytes, but {src.where} has {src.size}; "
                                      "delete it or download it again")
            got = Fetched(hand, sha256_file(hand), hand.stat().st_size)
        else:
            from r1searcher.data.sources.hub import hub_fetch

            got = hub_fetch(src, hand, revision)
    else:
        got = _plain(entry, root, man, force)
    man["sources"][src.url or f"hf://datasets/{src.repo}/{src.path}"] = {
        "sha256": got.sha256, "bytes": got.size, "etag": got.etag, "revision": got.revision}
    return got


@dataclass
class Got:
    """What ``get`` did for one entry."""

    entry: Entry
    path: Path
    count: int | None
    fetched: bool


def get(entry: Entry, root: Path, force: bool = False, revision: str = "main") -> Got:
    """Fetch and convert ``entry`` into ``root`` unless it is already there."""
    from r1searcher.data.sources.convert import build_corpus_from, convert_qa

    out = root / entry.relpath
    man = read_manifest(root)
    done = man["data"].get(entry.name)
    if not force and done and out.is_file() and out.stat().st_size == done.get("bytes"):
        return Got(entry, out, done.get("count"), fetched=False)
    raw = fetch_raw(entry, root, man, force, revision)
    if entry.kind == "qa":
        count = convert_qa(raw.path, out, entry.name)
        sha = sha256_file(out)
    else:
        count, sha = build_corpus_from(raw.path, out, entry.source.member)
    man = {**read_manifest(root), "sources": man["sources"]}  # another get may have written meanwhile
    man["data"][entry.name] = {
        "path": entry.relpath, "kind": entry.kind, "count": count, "sha256": sha, "bytes": out.stat().st_size,
        "source": entry.source.where, "raw_sha256": raw.sha256, "raw_bytes": raw.size,
        "revision": raw.revision, "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_manifest(root, man)
    return Got(entry, out, count, fetched=True)


def _size(entry: Entry) -> str:
    s = entry.source
    if s.size is None:
        return s.size_text or "?"
    n = float(s.size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


def status(root: Path) -> list[dict]:
    """One row per known name: name, kind, what, source, size, and where it is (``""``: absent)."""
    from r1searcher.data.qa import resolve_dataset

    rows = []
    for e in REGISTRY.values():
        out = root / e.relpath
        where = str(out) if out.is_file() else ""
        if not where and e.kind == "qa":
            try:
                where = f"{resolve_dataset(e.name)} (not from data get)"
            except FileNotFoundError:
                pass
        rows.append({"name": e.name, "kind": e.kind, "what": e.what, "source": e.source.where, "size": _size(e),
                     "present": where})
    return rows
