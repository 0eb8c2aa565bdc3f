"""Building a :mod:`~r1searcher.retrieval.tantivy.reader` index: the corpus streamed once into shards.

Memory: each shard is written through a tantivy arena sized from ``max_memory``, and the shard size
derives from it too, so the build's peak resident memory is set by the flag, not by the corpus.
A passage's own cost is bounded too: a corpus line longer than :func:`max_passage_bytes` of the
budget is skipped and named (``FILE:LINE``, like a malformed line) without ever being held whole,
and a passage handed in directly is indexed by at most that many characters (stored whole).

A build writes ``OUT.tmp/`` and renames it to ``OUT`` only when complete, so a killed build leaves
nothing that loads; its finished shards are kept in ``OUT.tmp/`` and the next build of the same
corpus and options resumes after them (``build.json`` records them, with each shard file's
sha256, checked before a shard is kept). ``OUT`` is replaced only when it is empty or an index of
ours (:mod:`r1searcher.util.outdir`); any other folder is refused before any work, and left alone.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r1searcher.retrieval.base import Passage
from r1searcher.util.outdir import check_replaceable, remove_ours, replace_dir
from r1searcher.retrieval.corpus import CorpusReadError, ErrorHandler, passage_line, record_from_json, report_to_stderr
from r1searcher.retrieval.manifest import BUILD_STATE, is_index_dir, write_manifest
from r1searcher.retrieval.store import OFFSETS_FILE, PASSAGES_FILE
from r1searcher.retrieval.tantivy.schema import (ENGINE, KIND, TOKENIZER, file_sha256s, index_files, make_analyzer,
                                                 passage_body, schema)

DEFAULT_MAX_MEMORY = 4 * 1024**3
#: Bytes of tantivy index per passage, measured (BENCHMARKS.md): sizes the default shard.
INDEX_BYTES_PER_PASSAGE = 200
#: Resident memory of the build process besides tantivy's arena: 43 MB after imports, ~125 MB
#: peak with tantivy's smallest arena (15 MB) once its flushes and merges run (measured).
BASE_RSS = 112 * 1024**2
_STATE = BUILD_STATE
_OFFSETS_RAW = "offsets.bin"
_WHAT = "an r1searcher index"
#: Characters of a passage's start that are analysed for the avgdl probe terms (not the whole body).
_PROBE_CHARS = 2000


def parse_size(text: str | int) -> int:
    """``"4G"`` / ``"512M"`` / ``"300000000"`` → bytes."""
    if isinstance(text, int):
        return text
    s = str(text).strip().upper().removesuffix("B")
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}.get(s[-1:], 1)
    try:
        v = float(s[:-1] if s[-1:] in "KMGT" else s) * mult
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (e.g. 4G, 512M)") from None
    if v <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return int(v)


def peak_rss() -> int:
    """VmHWM of this process in bytes (0 where /proc is absent)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def max_passage_bytes(max_memory: int) -> int:
    """The longest corpus line (bytes) a build of this budget reads: a line costs the build about
    15× its size while it is parsed, stored and indexed (bytes, str, tantivy's postings before its
    next flush), so it gets a 64th of what the budget leaves after the base: 2.2 MiB at 256M,
    16 MiB (the cap) from about 1.1G. A ≤100-word passage is under 1 KB."""
    return max(64 * 1024, min(16 * 1024**2, (max_memory - BASE_RSS) // 64))


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def stream_corpus(
    path: str | Path,
    on_error: ErrorHandler = report_to_stderr,
    max_line_bytes: int | None = None,
) -> Iterator[tuple[Passage, int]]:
    """(passage, bytes of the file read so far) for a corpus JSONL (``.gz`` welcome), line by line.

    The byte position drives an honest progress bar/ETA without a counting pass. Malformed lines
    are reported (``FILE:LINE: why``) and skipped; so are lines longer than ``max_line_bytes``
    (read through in 1 MiB pieces, never held whole: :func:`max_passage_bytes` of the build's
    budget). A file that cannot be read to its end raises :class:`CorpusReadError` naming it and
    the last line read.
    """
    import zlib

    p = str(path)
    if not Path(p).is_file():
        raise FileNotFoundError(f"corpus file not found: {p}")
    raw = open(p, "rb")
    stream = gzip.GzipFile(fileobj=raw) if p.endswith(".gz") else raw
    limit = max_line_bytes if max_line_bytes is not None else -1
    row, lineno = 0, 0
    try:
        while True:
            try:
                line = stream.readline(limit + 1 if limit > 0 else -1)
                over = 0
                if limit > 0 and len(line) > limit and not line.endswith(b"\n"):
                    over = len(line)
                    while line and not line.endswith(b"\n"):
                        line = stream.readline(1 << 20)
                        over += len(line)
            except (EOFError, OSError, zlib.error) as e:
                what = "ends early (truncated .gz?)" if isinstance(e, EOFError) else f"cannot be read ({e})"
                raise CorpusReadError(f"{p}: {what} after line {lineno}") from None
            if not line and not over:
                return
            lineno += 1
            if over:
                on_error(p, lineno, f"line of {_mb(over)} is over the {_mb(limit)} one passage may take in this build's "
                                    f"memory budget; skipped (cut long documents into passages with 'r1searcher corpus build')")
                continue
            if not line.strip():
                continue
            try:
                title, text, rid = record_from_json(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
                on_error(p, lineno, str(e).split("\n")[0])
                continue
            yield Passage(id=rid if rid is not None else str(row), title=title, text=text), raw.tell()
            row += 1
    finally:
        raw.close()


def default_shard_size(max_memory: int) -> int:
    """Passages per shard: a shard's index stays within a quarter of the memory budget, so the
    merges tantivy runs inside a shard (which read its segments) stay inside the budget too."""
    return max(50_000, int(max_memory * 0.25 / INDEX_BYTES_PER_PASSAGE))


def writer_heap(max_memory: int, threads: int) -> int:
    """tantivy's indexing arena for a budget: what the budget leaves after the process's base
    memory, halved for the arena's own overhead and merges; at least tantivy's 15 MB per thread."""
    return max(15_000_000 * threads, int((max_memory - BASE_RSS) * 0.5))


def _find_avgdl(node: dict) -> float:
    if str(node.get("description", "")).startswith("avgdl"):
        return float(node["value"])
    for child in node.get("details", []) or []:
        v = _find_avgdl(child)
        if v:
            return v
    return 0.0


class _ShardWriter:
    """One shard being written: a tantivy writer with the budget's arena; rows in order."""

    def __init__(self, directory: Path, analyzer_args: tuple, heap: int, threads: int):
        import tantivy

        directory.mkdir(parents=True)
        self.dir = directory
        self.index = tantivy.Index(schema(), path=str(directory))
        self.index.register_tokenizer(TOKENIZER, make_analyzer(*analyzer_args))
        self.writer = self.index.writer(heap_size=heap, num_threads=threads)
        self.n = 0

    def add(self, body: str, row: int) -> None:
        import tantivy

        d = tantivy.Document()
        d.add_text("body", body)
        d.add_unsigned("row", row)
        self.writer.add_document(d)
        self.n += 1

    def finish(self, probe_terms: list[str]) -> dict:
        """Commit, wait for merges, and describe the shard (documents, avgdl, file sizes and sha256s).

        tantivy keeps the exact total token count of the field but does not expose it to Python;
        its score explanation prints ``avgdl`` = total tokens / documents, so one explained hit of
        a term known to occur (``probe_terms``) gives it.
        """
        import tantivy

        self.writer.commit()
        self.writer.wait_merging_threads()
        del self.writer
        self.index.reload()
        searcher = self.index.searcher()

        avgdl = 0.0
        for term in probe_terms:
            q = tantivy.Query.term_query(self.index.schema, "body", term)
            hits = searcher.search(q, 1, count=False).hits
            if hits:
                avgdl = _find_avgdl(json.loads(q.explain(searcher, hits[0][1]).to_json()))
                break
        # tantivy's avgdl is a float32 of an exact integer total: recover the total (exact to a few
        # tokens in 10^8), so shards of one corpus add up to that corpus's average
        return {"name": self.dir.name, "passages": self.n, "tokens": round(avgdl * self.n), "segments": searcher.num_segments,
                "files": index_files(self.dir), "sha256": file_sha256s(self.dir)}


def _fingerprint(source: str | Path | None) -> dict:
    if source is None:
        return {}
    st = Path(source).stat()
    return {"path": str(Path(source).resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}


@dataclass(frozen=True)
class _Plan:
    """What a build of one memory budget and set of options does: the manifest's params, and the
    threads, shard size, tantivy arena and longest indexed body the budget allows."""

    params: dict
    threads: int
    shard_size: int
    heap: int
    body_limit: int

    @property
    def analyzer_args(self) -> tuple:
        return self.params["stemmer"], self.params["stopwords"]


def _plan(max_memory: int, threads: int | None, shard_size: int | None, stemmer: str | None, stopwords: str | None,
          k1: float, b: float, index_title: bool) -> _Plan:
    if max_memory < BASE_RSS + 32 * 1024**2:
        raise ValueError(f"max_memory {max_memory / 2**20:.0f} MiB is below what a build needs "
                         f"({(BASE_RSS + 32 * 1024**2) / 2**20:.0f} MiB: interpreter + tantivy's smallest arena)")
    # tantivy's arena is at least 15 MB per indexing thread: small budgets index with one
    threads = threads or (min(2, os.cpu_count() or 1) if max_memory >= 512 * 1024**2 else 1)
    shard_size = shard_size or default_shard_size(max_memory)
    params = {"engine": ENGINE, "stemmer": stemmer, "stopwords": stopwords, "k1": k1, "b": b,
              "index_title": index_title, "analyzer": "simple", "shard_size": shard_size}
    return _Plan(params, threads, shard_size, writer_heap(max_memory, threads), max_passage_bytes(max_memory))


def _start(out: Path, source: str | Path | None, params: dict) -> tuple[Path, dict]:
    """The build folder ``OUT.tmp`` and its state: resumed when ``source`` is given and an unfinished
    build of the same corpus and options is there, else started afresh."""
    check_replaceable(out, is_index_dir, _WHAT)
    tmp = out.with_name(out.name + ".tmp")
    key = {"source": _fingerprint(source), "params": params}
    state = None
    if source is not None:
        check_replaceable(tmp, is_index_dir, _WHAT)
        state = _resume_state(tmp, key)
    if state is None:
        remove_ours(tmp, is_index_dir, _WHAT)
        tmp.mkdir(parents=True)
        state = {**key, "shards": [], "rows": 0, "bytes": 0}
        _write_state(tmp, state)
    return tmp, state


class _StoreWriter:
    """The passage store being written: ``passages.jsonl`` and the raw offset table, a passage at a
    time; a resumed build reopens them at the kept prefix (whose sha256 is re-read from our own output)."""

    def __init__(self, tmp: Path, rows: int, nbytes: int):
        self.f_pass = open(tmp / PASSAGES_FILE, "r+b" if rows else "wb")
        self.f_pass.truncate(nbytes)
        self.f_pass.seek(nbytes)
        self.f_off = open(tmp / _OFFSETS_RAW, "r+b" if rows else "wb")
        self.f_off.truncate(8 * (rows + 1) if rows else 0)
        self.f_off.seek(0, 2)
        self.sha = hashlib.sha256()
        if rows:
            with open(tmp / PASSAGES_FILE, "rb") as f:
                for block in iter(lambda: f.read(1 << 24), b""):
                    self.sha.update(block)
        else:
            self.f_off.write(np.int64(0).tobytes())
        self.pos = nbytes
        self.offs: list[int] = []

    def add(self, p: Passage) -> None:
        line = passage_line(p).encode("utf-8")
        self.f_pass.write(line)
        self.sha.update(line)
        self.pos += len(line)
        self.offs.append(self.pos)
        if len(self.offs) >= 65536:
            self._write_offsets()

    def _write_offsets(self) -> None:
        self.f_off.write(np.asarray(self.offs, dtype=np.int64).tobytes())
        self.offs.clear()

    def sync(self) -> None:
        """Everything added so far on disk (a shard just finished: the build may resume after it)."""
        self._write_offsets()
        self.f_pass.flush()
        self.f_off.flush()
        os.fsync(self.f_pass.fileno())
        os.fsync(self.f_off.fileno())

    def close(self) -> None:
        self._write_offsets()
        self.f_pass.close()
        self.f_off.close()


def build_tantivy(
    passages: Iterable[Passage] | Iterable[tuple[Passage, int]],
    out: str | Path,
    *,
    stemmer: str | None = "english",
    stopwords: str | None = "en",
    k1: float = 0.9,
    b: float = 0.4,
    index_title: bool = True,
    max_memory: int | str = DEFAULT_MAX_MEMORY,
    shard_size: int | None = None,
    threads: int | None = None,
    source: str | Path | None = None,
    total_bytes: int | None = None,
    show_progress: bool = False,
    _stop_after: int | None = None,
) -> dict:
    """Stream ``passages`` once into a sharded tantivy BM25 index at ``out``; return its manifest.

    ``passages`` yields passages, or (passage, bytes read) pairs from :func:`stream_corpus` (then
    ``total_bytes`` gives the progress bar its end). ``max_memory`` bounds the build's resident
    memory (tantivy's arena, the shard size and the longest passage indexed whole derive from it);
    ``shard_size`` overrides the shard size. With ``source`` (the corpus file), a killed build
    resumes after its last finished shard when rerun with the same file and options.
    ``_stop_after`` (tests) simulates a kill after that many passages. An ``out`` that exists and
    is neither empty nor an index of ours raises :class:`~r1searcher.util.outdir.NotOursError` first.
    """
    max_memory = parse_size(max_memory)
    plan = _plan(max_memory, threads, shard_size, stemmer, stopwords, k1, b, index_title)
    analyzer = make_analyzer(stemmer, stopwords)  # bad options fail before any work
    out = Path(out)
    tmp, state = _start(out, source, plan.params)
    t0 = time.perf_counter()
    store = _StoreWriter(tmp, state["rows"], state["bytes"])
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_bytes, desc="bm25 build", unit="B", unit_scale=True, mininterval=2.0)
    try:
        _index_passages(passages, plan, analyzer, state, tmp, store, bar, _stop_after)
    finally:
        if bar is not None:
            bar.close()
        store.close()
    return _finish(tmp, out, state, plan, store.sha.hexdigest(), max_memory, t0)


def _index_passages(passages, plan: _Plan, analyzer, state: dict, tmp: Path, store: _StoreWriter, bar,
                    stop_after: int | None) -> None:
    """Add every passage after the ``state``'s finished rows to the store and to shards of
    ``plan.shard_size``, closing (and recording) each shard as it fills and the last at the end."""
    done_rows = state["rows"]
    writer: _ShardWriter | None = None
    probe: list[str] = []
    base = row = 0
    for item in passages:
        p, nbytes = item if isinstance(item, tuple) else (item, None)
        if row < done_rows:  # resumed: these are in finished shards already
            row += 1
            continue
        if writer is None:
            writer = _ShardWriter(tmp / f"shard-{len(state['shards']):03d}", plan.analyzer_args, plan.heap, plan.threads)
            probe, base = [], row
        body = passage_body(p, plan.params["index_title"])
        if len(body) > plan.body_limit:  # stored whole; indexed by its start, so one passage cannot burst the budget
            print(f"warning: passage {p.id!r} (row {row}) has {len(body):,} characters; indexing its first "
                  f"{plan.body_limit:,} (the longest a build of this memory budget indexes whole)", file=sys.stderr)
            body = body[:plan.body_limit]
        writer.add(body, row - base)
        if len(probe) < 8 and body.strip():
            # the passage's start only: analysing all of a long body costs ~60 B per token (any
            # term with a hit gives the shard's avgdl, so a word cut at the end does no harm)
            probe.extend(analyzer.analyze(body[:_PROBE_CHARS])[:2])
        store.add(p)
        row += 1
        if bar is not None and nbytes is not None and row % 1024 == 0:
            bar.update(nbytes - bar.n)
        if stop_after is not None and row >= stop_after:
            raise KeyboardInterrupt(f"simulated kill after {row} passages")
        if writer.n >= plan.shard_size:
            _close_shard(writer, probe, state, tmp, store, row)
            writer = None
    if writer is not None and writer.n:
        _close_shard(writer, probe, state, tmp, store, row)


def _finish(tmp: Path, out: Path, state: dict, plan: _Plan, corpus_sha256: str, max_memory: int, t0: float) -> dict:
    """Check the build holds something searchable, write the offset table and the manifest, and
    move ``OUT.tmp`` to ``OUT``; return the manifest."""
    if not state["shards"]:
        shutil.rmtree(tmp)
        raise ValueError("cannot build a BM25 index over an empty corpus")
    n = sum(s["passages"] for s in state["shards"])
    tokens = sum(s["tokens"] for s in state["shards"])
    if tokens <= 0:
        shutil.rmtree(tmp)
        raise ValueError("no indexable word in the whole corpus (all empty or stop words)")
    _finish_offsets(tmp, n)
    store = {k: v for k, v in index_files(tmp).items() if k in (PASSAGES_FILE, OFFSETS_FILE)}
    # passages.jsonl's sha256 is the corpus sha256; the offset table gets its own
    store_sha = {OFFSETS_FILE: file_sha256s(tmp, [OFFSETS_FILE])[OFFSETS_FILE]}
    extra = {"shards": state["shards"], "avgdl": tokens / n, "build_seconds": round(time.perf_counter() - t0, 1),
             "build_peak_rss": peak_rss(), "max_memory": max_memory, "writer_heap": plan.heap, "store_files": store,
             "store_sha256": store_sha}
    m = write_manifest(tmp, KIND, corpus_sha256, n, plan.params, **extra)
    (tmp / _STATE).unlink(missing_ok=True)
    replace_dir(tmp, out, is_index_dir, _WHAT)
    return m


def _close_shard(writer: _ShardWriter, probe: list[str], state: dict, tmp: Path, store: _StoreWriter, row: int) -> None:
    info = writer.finish(probe)
    store.sync()
    state["shards"].append(info)
    state["rows"], state["bytes"] = row, store.pos
    _write_state(tmp, state)


def _write_state(tmp: Path, state: dict) -> None:
    t = tmp / (_STATE + ".tmp")
    t.write_text(json.dumps(state, indent=1))
    t.replace(tmp / _STATE)


def _resume_state(tmp: Path, key: dict) -> dict | None:
    """The recorded state of an unfinished build of the same corpus and options, else None."""
    try:
        state = json.loads((tmp / _STATE).read_text())
    except (OSError, ValueError):
        return None
    if state.get("source") != key["source"] or state.get("params") != key["params"]:
        return None
    for s in state["shards"]:  # a finished shard must be intact to be kept: sizes, then contents
        d = tmp / s["name"]
        if not d.is_dir() or index_files(d) != s["files"] or file_sha256s(d) != s.get("sha256"):
            return None
    for d in tmp.glob("shard-*"):  # the shard that was being written when the build died
        if d.name not in {s["name"] for s in state["shards"]}:
            shutil.rmtree(d)
    print(f"resuming the build in {tmp}: {len(state['shards'])} shard(s), {state['rows']:,} passages kept",
          file=sys.stderr)
    return state


def _finish_offsets(tmp: Path, n: int) -> None:
    """``offsets.bin`` (raw int64) → ``offsets.npy`` without holding it all in memory."""
    raw = np.memmap(tmp / _OFFSETS_RAW, dtype=np.int64, mode="r")
    if len(raw) != n + 1:
        raise RuntimeError(f"offset table has {len(raw)} entries for {n} passages")
    out = np.lib.format.open_memmap(tmp / OFFSETS_FILE, mode="w+", dtype=np.int64, shape=(n + 1,))
    for s in range(0, n + 1, 1 << 22):
        out[s:s + (1 << 22)] = raw[s:s + (1 << 22)]
    out.flush()
    del out, raw
    (tmp / _OFFSETS_RAW).unlink()
