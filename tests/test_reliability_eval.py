"""Issue #16, eval side, through ``r1searcher eval`` with a real tiny model and a real server on
loopback: a predictions folder refuses another method or model; rows that ended with
retriever_error are retried once the server is back and the run exits non-zero until then; a file
with no usable question fails."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from r1searcher.cli import main
from r1searcher.evaluate import read_done
from tests.test_retrieval_server import free_port
from tests.test_trainer_loop import write_tiny_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smollm_tokenizer) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("rel_eval"), smollm_tokenizer)


@pytest.fixture
def searching_engine(monkeypatch, smollm_tokenizer):
    """The real RolloutEngine, steered so the tiny random model searches once per question."""
    import r1searcher.rollout.engine as E
    from r1searcher.rollout.steer import ScriptedSteer, script_tokens, search_script

    script = script_tokens(smollm_tokenizer, search_script(["capital", "city"], "Paris", "Let me search.", 1))

    class Steered(E.RolloutEngine):
        def __init__(self, *a, **kw):
            super().__init__(*a, steer=ScriptedSteer(lambda row: script), **kw)

    monkeypatch.setattr(E, "RolloutEngine", Steered)


class PortServer:
    """``r1searcher serve``'s app over the tiny corpus, started on a chosen port."""

    def __init__(self, corpus: Path, port: int):
        import uvicorn

        from r1searcher.retrieval.bm25 import BM25Index
        from r1searcher.retrieval.corpus import read_passages
        from r1searcher.retrieval.server import create_app

        app = create_app(BM25Index.build(list(read_passages(corpus))))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _eval(tiny: Path, out: Path, *extra: str, method: str = "rl", model: str | None = None, data: str | None = None,
          source: list[str] | None = None) -> int:
    return main(["eval", "--method", method, "--model", model or str(tiny / "model"), "--data", data or str(tiny / "qa.jsonl"),
                 *(source or ["--index", str(tiny / "corpus.jsonl")]), "--out", str(out), "-k", "2", "--batch-size", "4",
                 "rollout.max_new_tokens_per_turn=40", "rollout.max_response_tokens=120", *extra])


def test_retriever_error_rows_are_retried_and_fail_the_run_until_then(tiny, tmp_path, searching_engine, capsys):
    port = free_port()
    server = [f"--server", f"http://127.0.0.1:{port}"]
    out = tmp_path / "ev"
    knobs = ["rollout.on_retriever_error=stop", "retrieval.retries=0"]
    assert _eval(tiny, out, *knobs, source=server) == 3  # nothing listens on the port
    assert "retriever_error" in capsys.readouterr().err
    rows = read_done(out / "qa" / "predictions.jsonl")
    assert rows and all(r["stop_reason_final"] == "retriever_error" for r in rows)
    assert json.loads((out / "qa" / "metrics.json").read_text())["retriever_errors"] == len(rows)
    s = PortServer(tiny / "corpus.jsonl", port)
    try:
        assert _eval(tiny, out, *knobs, source=server) == 0
    finally:
        s.stop()
    again = read_done(out / "qa" / "predictions.jsonl")
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in rows)  # each question once
    assert not any(r["stop_reason_final"] == "retriever_error" for r in again)
    assert all(r["n_searches"] == 1 for r in again)
    assert json.loads((out / "qa" / "metrics.json").read_text())["retriever_errors"] == 0


def test_a_predictions_folder_refuses_another_method_or_model(tiny, tmp_path, smollm_tokenizer, capsys):
    from tests.conftest import make_tiny_causal_lm

    out = tmp_path / "ev"
    assert _eval(tiny, out, "--limit", "2") == 0
    capsys.readouterr()
    assert _eval(tiny, out, method="naive") == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("r1searcher eval: error: ")
    assert "method 'rl' (now 'naive')" in err and "Loading weights" not in err  # refused before the model loads
    other = tmp_path / "other_model"
    make_tiny_causal_lm(smollm_tokenizer, seed=3).save_pretrained(other)
    smollm_tokenizer.save_pretrained(other)
    assert _eval(tiny, out, model=str(other)) == 2
    assert "model" in capsys.readouterr().err
    assert _eval(tiny, out, "rollout.max_searches=2") == 2
    assert "limits" in capsys.readouterr().err
    assert len(read_done(out / "qa" / "predictions.jsonl")) == 2  # nothing was relabelled or appended
    assert _eval(tiny, out) == 0  # the same setup continues (more questions)
    assert len(read_done(out / "qa" / "predictions.jsonl")) == 6  # all of qa.jsonl


@pytest.mark.parametrize("content", ["", "{not json\n[1, 2]\n" + json.dumps({"question": "no answer"}) + "\n"])
def test_no_usable_question_fails(tiny, tmp_path, content, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    assert _eval(tiny, tmp_path / "ev", data=str(data)) == 2
    assert "no usable question" in capsys.readouterr().err
