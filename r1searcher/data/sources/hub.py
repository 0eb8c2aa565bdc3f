"""Files from a Hugging Face hub dataset repo, through ``huggingface_hub``, checked against the hub's hash.

``hf_hub_download`` brings the cache (a second call for the same file downloads nothing), tokens
(``HF_TOKEN`` or ``hf auth login``), ``HF_ENDPOINT`` mirrors and ``HF_HUB_OFFLINE``; a connection
cut mid-file is resumed in the same call with a ``Range`` request. (huggingface_hub >= 1.x writes
each try to a process-unique temporary file and deletes it on failure, so an interrupted run
starts that file over next time.) It does not check content hashes, so we do: the hub publishes
an LFS file's sha256 and a small file's git blob id (``get_paths_info``); a file that matches
neither is removed from the cache and refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from r1searcher.data.sources.download import DataSourceError, Fetched, one_line, sha256_file
from r1searcher.data.sources.registry import Source


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    """``$HF_HUB_CACHE`` or ``$HF_HOME/hub`` as set now (huggingface_hub reads them once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file: sha1 of ``blob <size>\\0`` and the bytes (what the hub shows as ``oid``)."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _evict(pointer: Path) -> None:
    """Remove a cached file: the snapshot link and the blob it points to."""
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    if blob != pointer:
        blob.unlink(missing_ok=True)


def hub_fetch(src: Source, by_hand: Path, revision: str = "main") -> Fetched:
    """Download ``src`` (a hub file) into the hub cache and check it; ``by_hand`` is named in errors as
    the place for a copy downloaded by hand."""
    from huggingface_hub import HfApi, hf_hub_download

    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or None
    offline = _env_true("HF_HUB_OFFLINE")
    where = f"{endpoint or 'https://huggingface.co'}/datasets/{src.repo}/resolve/{revision}/{src.path}"

    def fail(e: BaseException) -> DataSourceError:
        hint = "HF_HUB_OFFLINE is set and the file is not in the hub cache" if offline else one_line(e)
        return DataSourceError(f"cannot download {where} ({hint}); run the same command again when online, "
                               f"or download it by hand from {src.where} and save it as {by_hand}")

    want_sha = want_blob = ""
    if not offline:
        try:
            infos = HfApi(endpoint=endpoint).get_paths_info(src.repo, [src.path], repo_type="dataset", revision=revision)
        except Exception as e:  # noqa: BLE001 - connection, HTTP and hub errors all end the same way
            raise fail(e) from None
        files = [i for i in infos if getattr(i, "path", None) == src.path and hasattr(i, "blob_id")]
        if not files:
            raise DataSourceError(f"{src.path} is not in the hub dataset {src.repo} at {revision}")
        if files[0].lfs is not None:
            want_sha = files[0].lfs.sha256
        else:
            want_blob = files[0].blob_id
    try:
        local = Path(hf_hub_download(src.repo, src.path, repo_type="dataset", revision=revision, endpoint=endpoint,
                                     cache_dir=_cache_dir(), local_files_only=offline))
    except Exception as e:  # noqa: BLE001
        raise fail(e) from None
    digest = sha256_file(local)
    if (want_sha and digest != want_sha) or (want_blob and git_blob_sha1(local) != want_blob):
        _evict(local)
        published = f"sha256 {want_sha[:16]}…" if want_sha else f"git blob {want_blob[:16]}…"
        raise DataSourceError(f"{where}: the download (sha256 {digest[:16]}…) does not match the published "
                              f"{published}; refused and removed from the hub cache")
    parts = local.parts
    commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts else ""
    return Fetched(local, digest, local.stat().st_size, revision=commit)
