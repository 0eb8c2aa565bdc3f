"""The run folder's layout (``r1searcher/models/runs.py``): which checkpoints a run has, the latest, which
folder holds the weights to load, and a checkpoint's ``state.json``; and opening the retriever a
config names (``retrieval/index.open_retriever``). Real folders, a real BM25 index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1searcher.config import load_config
from r1searcher.models.runs import CheckpointError, checkpoint_dirs, checkpoint_state, latest_checkpoint, resolve_model_dir


def _checkpoint(run: Path, step: int, *, adapter: bool = False) -> Path:
    d = run / "checkpoints" / f"step_{step:08d}"
    (d / "model").mkdir(parents=True)
    (d / "model" / ("adapter_config.json" if adapter else "config.json")).write_text("{}")
    (d / "state.json").write_text(json.dumps({"step": step, "elapsed": 1.5 * step}))
    return d


def test_checkpoints_are_ordered_by_step_and_unfinished_ones_ignored(tmp_path):
    assert checkpoint_dirs(tmp_path) == [] and latest_checkpoint(tmp_path) is None
    for step in (10, 9, 100):  # numeric order, not the names' order after a 9 → 10 carry
        _checkpoint(tmp_path, step)
    root = tmp_path / "checkpoints"
    (root / ".tmp-step_00000200").mkdir()  # a save killed half way
    (root / "damaged-step_00000300").mkdir()  # moved aside by --last-intact
    (root / "step_00000400").write_text("a file, not a checkpoint")
    (root / "step_x").mkdir()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_00000009", "step_00000010", "step_00000100"]
    assert latest_checkpoint(str(tmp_path)) == root / "step_00000100"


def test_a_run_a_checkpoint_and_a_model_folder_all_resolve_to_the_weights(tmp_path):
    run = tmp_path / "run"
    _checkpoint(run, 1)
    last = _checkpoint(run, 2, adapter=True)
    assert resolve_model_dir(run) == last / "model"  # a run: its latest checkpoint's weights
    assert resolve_model_dir(last) == last / "model"
    assert resolve_model_dir(last / "model") == last / "model"
    assert resolve_model_dir(str(last / "model")) == last / "model"


@pytest.mark.parametrize("case", ["nothing", "empty run", "no weights"])
def test_a_folder_without_a_model_is_a_one_line_error(tmp_path, case):
    target = tmp_path / "x"
    if case == "empty run":
        (target / "checkpoints" / ".tmp-step_00000001").mkdir(parents=True)
        match = "run folder without a complete checkpoint"
    else:
        if case == "no weights":
            (target / "model").mkdir(parents=True)
        match = "no model here"
    with pytest.raises(FileNotFoundError, match=match) as e:
        resolve_model_dir(target)
    assert "\n" not in str(e.value)


def test_checkpoint_state_reads_state_json_and_names_a_damaged_one(tmp_path):
    d = _checkpoint(tmp_path, 3)
    assert checkpoint_state(d) == {"step": 3, "elapsed": 4.5}
    (d / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"state.json: not valid JSON .*damaged"):
        checkpoint_state(d)
    (d / "state.json").write_text(json.dumps({"elapsed": 1.0}))
    with pytest.raises(CheckpointError, match="no 'step' recorded"):
        checkpoint_state(d)
    (d / "state.json").unlink()
    with pytest.raises(CheckpointError, match="state.json: missing"):
        checkpoint_state(d)


def test_the_checkpoint_module_reads_the_same_layout():
    """rl/checkpoint.py writes what runs.py reads: one error class, one manifest name."""
    from r1searcher.rl import checkpoint

    assert checkpoint.CheckpointError is CheckpointError
    assert checkpoint.MANIFEST == "manifest.json"


# --------------------------------------------------------------------------- open_retriever

PASSAGES = [
    {"id": "p0", "title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"id": "p1", "title": "Danube", "text": "The Danube is the second-longest river in Europe."},
    {"id": "p2", "title": "Kelvara", "text": "Kelvara is a town in Norland, known for its harbour."},
]


def _corpus(tmp_path: Path) -> Path:
    f = tmp_path / "corpus.jsonl"
    f.write_text("".join(json.dumps(p) + "\n" for p in PASSAGES))
    return f


def test_a_corpus_file_opens_as_a_cached_bm25_index(tmp_path):
    from r1searcher.retrieval.index import open_retriever

    cfg = load_config(None, [f"retrieval.index={_corpus(tmp_path)}", f"model.cache_dir={tmp_path / 'cache'}"])
    index = open_retriever(cfg)
    hits = index.search(["Which river is in Europe?", "harbour town Norland"], 1)
    assert [h[0].title for h in hits] == ["Danube", "Kelvara"]
    built = sorted((tmp_path / "cache" / "indexes").iterdir())
    assert built, "the index is cached under the cache root"
    again = open_retriever(cfg)  # the second open reuses the cached index: no new folder
    assert sorted((tmp_path / "cache" / "indexes").iterdir()) == built
    assert [h[0].title for h in again.search(["capital of France"], 1)] == ["Paris"]
    # the cached folder is an index folder: naming it opens it directly
    folder = next(p for p in built if p.is_dir() and not p.name.endswith(".emb"))
    direct = open_retriever(load_config(None, [f"retrieval.index={folder}"]))
    assert [h[0].title for h in direct.search(["capital of France"], 1)] == ["Paris"]


def test_a_server_url_opens_an_http_client_and_nothing_is_an_error(tmp_path):
    from r1searcher.retrieval.client import HttpRetriever
    from r1searcher.retrieval.index import open_retriever

    client = open_retriever(load_config(None, ["retrieval.server=http://127.0.0.1:9", "retrieval.index=ignored"]))
    assert isinstance(client, HttpRetriever) and client.url.startswith("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="no retriever: set retrieval.index"):
        open_retriever(load_config(None, ["retrieval.index=", "retrieval.server="]))
    with pytest.raises(FileNotFoundError, match="not found"):
        open_retriever(load_config(None, [f"retrieval.index={tmp_path / 'missing.jsonl'}"]))
