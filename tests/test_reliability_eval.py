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
from r1searcher.eval.evaluate import read_done
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


# ---------------------------------------------------------------- one folder, one run, one row per question
# Task C: concurrent writers, damaged lines, changed inputs, a full disk, a lone surrogate, --limit -5.

HOLD = """import fcntl, sys
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "qa" / "predictions.jsonl").read_text().splitlines() if x.strip()]


def test_a_second_eval_into_a_folder_in_use_is_refused_and_a_crashed_holder_frees_it(tiny, tmp_path, capsys):
    """Two evals into one --out at once used to both write every question (40 rows for 20); the
    folder lock refuses the second with one line, and a holder killed with SIGKILL frees it."""
    import subprocess
    import sys

    out = tmp_path / "ev"
    (out / "qa").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / "qa" / ".lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _eval(tiny, out, method="naive") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("r1searcher eval: error: ") and str(out / "qa") in err[-1] and "in use" in err[-1]
        assert not (out / "qa" / "predictions.jsonl").exists()  # nothing written next to the other run
    finally:
        holder.kill()
        holder.wait(10)
    assert _eval(tiny, out, method="naive") == 0
    assert sorted(r["id"] for r in _rows(out)) == [f"q{i}" for i in range(6)]


def test_rows_written_twice_count_once(tiny, tmp_path, caplog):
    """Predictions written twice (as two writers left them) are counted once, and the file is mended."""
    out = tmp_path / "ev"
    assert _eval(tiny, out, method="naive") == 0
    pred = out / "qa" / "predictions.jsonl"
    pred.write_text(pred.read_text() * 2)
    assert _eval(tiny, out, method="naive") == 0
    assert json.loads((out / "qa" / "metrics.json").read_text())["n"] == 6
    assert sorted(r["id"] for r in _rows(out)) == [f"q{i}" for i in range(6)]
    assert "a second row" in caplog.text


def test_a_damaged_middle_line_costs_only_its_own_question(tiny, tmp_path, caplog):
    """Resume used to cut the file at the first damaged line and redo everything after it."""
    out = tmp_path / "ev"
    assert _eval(tiny, out, method="naive") == 0
    pred = out / "qa" / "predictions.jsonl"
    rows = [{**r, "pred_ans": "KEPT"} for r in _rows(out)]  # marks rows that are not recomputed
    lines = [json.dumps(r) for r in rows]
    lines[2] = lines[2][:40]  # line 3: damaged
    pred.write_text("\n".join(lines) + "\n")
    caplog.clear()
    assert _eval(tiny, out, method="naive") == 0
    assert f"{pred}:3: invalid JSON" in caplog.text and "1 damaged line(s) dropped, 5 valid row(s) kept" in caplog.text
    again = {r["id"]: r for r in _rows(out)}  # every line of the rewritten file is valid JSON
    assert sorted(again) == [f"q{i}" for i in range(6)] and len(pred.read_text().splitlines()) == 6
    assert [i for i, r in sorted(again.items()) if r["pred_ans"] == "KEPT"] == ["q0", "q1", "q3", "q4", "q5"]
    assert json.loads((out / "qa" / "metrics.json").read_text())["n"] == 6


def test_a_changed_data_file_is_refused_and_restart_redoes_it(tiny, tmp_path, capsys):
    """A QA file without ids with one line inserted used to be resumed: rows answered other questions."""
    from r1searcher.data.qa import load_qa
    from tests.test_trainer_loop import QUESTIONS

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    out = tmp_path / "ev"
    assert _eval(tiny, out, method="naive", data=str(data)) == 0
    run = json.loads((out / "qa" / "run.json").read_text())
    assert len(run["data_sha256"]) == 64 and run["index"]["corpus_file_sha256"]  # what it was run on
    data.write_text(json.dumps({"question": "Which river flows through Paris?", "answer": "Seine"}) + "\n" + data.read_text())
    capsys.readouterr()
    assert _eval(tiny, out, method="naive", data=str(data)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"the data file {data} changed" in err and "--restart" in err
    assert len(_rows(out)) == 6  # untouched
    assert _eval(tiny, out, "--restart", method="naive", data=str(data)) == 0
    recs = load_qa(data)
    assert [(r["id"], r["question"]) for r in _rows(out)] == [(r.id, r.question) for r in recs]


def test_an_index_rebuilt_at_the_same_path_is_refused(tiny, tmp_path, capsys):
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages

    passages = list(read_passages(tiny / "corpus.jsonl"))
    idx = tmp_path / "idx"
    BM25Index.build(passages).save(idx)
    out = tmp_path / "ev"
    src = ["--index", str(idx)]
    assert _eval(tiny, out, "--limit", "2", method="rag", source=src) == 0
    BM25Index.build(passages[:-1]).save(idx)  # rebuilt in place, on another corpus
    capsys.readouterr()
    assert _eval(tiny, out, method="rag", source=src) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the index is another build" in err and "corpus_sha256" in err
    assert len(_rows(out)) == 2


def _mount_small_tmpfs(d: Path) -> None:
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def _fill(d: Path) -> None:
    """Take every free page of the file system holding ``d``."""
    with open(d / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.mark.parametrize("which", ["predictions.jsonl", "metrics.json"])
def test_a_full_disk_names_the_file(tiny, tmp_path, capsys, which):
    """ENOSPC used to be reported as '[Errno 28] No space left on device', naming no file."""
    import shutil
    import subprocess

    first = tmp_path / "first"
    assert _eval(tiny, first, *(["--limit", "2"] if which == "predictions.jsonl" else []), method="naive") == 0
    pred = first / "qa" / "predictions.jsonl"
    if which == "predictions.jsonl":  # no slack in its last page: the next row needs a new one
        size = pred.stat().st_size
        with open(pred, "a") as f:
            f.write("\n" * (-size % 4096))
    disk = tmp_path / "disk"
    _mount_small_tmpfs(disk)
    try:
        shutil.copytree(first, disk / "ev")
        before = (disk / "ev" / "qa" / "metrics.json").read_text()
        _fill(disk)
        capsys.readouterr()
        assert _eval(tiny, disk / "ev", method="naive") == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err == f"r1searcher eval: error: {disk / 'ev' / 'qa' / which}: No space left on device"
        assert (disk / "ev" / "qa" / "metrics.json").read_text() == before  # the old metrics stay whole
        assert sorted(p.name for p in (disk / "ev" / "qa").iterdir()) == [".lock", "config.yaml", "metrics.json",
                                                                         "predictions.jsonl", "run.json"]
        rows, damaged = [], []
        from r1searcher.eval.evaluate import read_done

        rows = read_done(disk / "ev" / "qa" / "predictions.jsonl", damaged)
        assert not damaged and len(rows) == (2 if which == "predictions.jsonl" else 6)  # no torn line left
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_lone_surrogate_in_a_question_is_a_reported_bad_line(tiny, tmp_path, caplog):
    """JSON "\\ud800" in a question used to crash eval in the tokenizer with a traceback."""
    data = tmp_path / "sur.jsonl"
    data.write_text('{"id": "a", "question": "What is the capital of France?", "answer": "Paris"}\n'
                    '{"id": "b", "question": "Which city \\ud800 is it?", "answer": "Paris"}\n'
                    '{"id": "c", "question": "Which river flows through Paris?", "answer": "Seine"}\n')
    out = tmp_path / "ev"
    assert _eval(tiny, out, method="naive", data=str(data)) == 0
    assert f"{data}:2: a lone surrogate in 'question'" in caplog.text
    m = json.loads((out / "sur" / "metrics.json").read_text())
    assert m["n"] == 2 and m["bad_lines"] == 1


def test_a_negative_limit_is_refused(tiny, tmp_path, capsys):
    """--limit -5 used to evaluate one question."""
    with pytest.raises(SystemExit) as e:
        _eval(tiny, tmp_path / "ev", "--limit", "-5", method="naive")
    assert e.value.code == 2
    assert "argument --limit: must be 0 (all) or more, got -5" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()
