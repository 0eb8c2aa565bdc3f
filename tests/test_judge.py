"""The judge client against a real HTTP server on loopback speaking the chat-completions shape:
retries (429 with Retry-After, 5xx, timeouts), clear errors, the on-disk cache, the concurrency
limit, configuration from the environment, and ``r1searcher metrics --judge``."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from r1searcher import cli
from r1searcher.util import chat as chat_mod
from r1searcher.eval.judge import (
    JUDGE_PROMPT,
    Judge,
    JudgeCache,
    JudgeError,
    build_prompt,
    parse_verdict,
)

# -- a tiny OpenAI-compatible server --------------------------------------------------------------

Reply = tuple[int, dict[str, str], Any]  # status, headers, JSON body (or raw bytes)


def verdict_reply(body: dict) -> Reply:
    """Say "True" when the prompt's predicted answer equals its golden answer, else "False"."""
    prompt = body["messages"][0]["content"]
    gold = prompt.split("Golden Answer: ")[1].split("\n")[0]
    pred = prompt.split("Predicted Answer: ")[1].split("\n")[0]
    text = "True" if gold.lower() == pred.strip().lower() else "False"
    return 200, {}, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


@dataclass
class ChatServer:
    """Records every request; ``script`` (request number → reply or None) overrides the default."""

    url: str = ""
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    script: Callable[[int, dict], Reply | None] = lambda i, body: None
    slow: threading.Event = field(default_factory=threading.Event)  # set at teardown to free sleepers
    barrier: threading.Barrier | None = None
    inflight: int = 0
    max_inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    state = ChatServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                i = len(state.requests)
                state.requests.append(body)
                state.headers.append(dict(self.headers))
                state.inflight += 1
                state.max_inflight = max(state.max_inflight, state.inflight)
            if state.barrier is not None:
                try:
                    state.barrier.wait()
                except threading.BrokenBarrierError:
                    pass
            if self.path != "/v1/chat/completions":
                status, headers, payload = 404, {}, {"error": f"no route {self.path}"}
            else:
                status, headers, payload = state.script(i, body) or verdict_reply(body)
            with state.lock:  # before replying, so the client's next request cannot overlap this one
                state.inflight -= 1
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield state
    finally:
        state.slow.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's retry waits instead of sleeping them."""
    waits: list[float] = []
    monkeypatch.setattr(chat_mod, "_sleep", waits.append)
    return waits


def make_judge(server: ChatServer, tmp_path: Path, **kw: Any) -> Judge:
    kw.setdefault("cache_path", tmp_path / "judge.sqlite")
    kw.setdefault("backoff_s", 0.01)
    return Judge(base_url=server.url, model="judge-test", **kw)


ITEMS = [("Capital of France?", "Paris", " Paris "), ("Capital of Italy?", "Rome", "Milan"),
         ("Is water wet?", False, "no")]


# -- basics ----------------------------------------------------------------------------------------


def test_request_shape_and_verdicts(server: ChatServer, tmp_path: Path) -> None:
    with make_judge(server, tmp_path, api_key="sk-test") as judge:
        res = judge.judge_many(ITEMS)
    assert [r.correct for r in res] == [True, False, True]
    assert [r.output for r in res] == ["True", "False", "True"]
    assert not any(r.cached for r in res)
    assert len(server.requests) == 3
    by_prompt = {b["messages"][0]["content"]: b for b in server.requests}
    body = by_prompt[build_prompt("Is water wet?", False, "no")]  # bool gold False → "no"
    assert body["model"] == "judge-test" and body["max_tokens"] == 1024 and body["temperature"] == 0.0
    assert body["messages"] == [{"role": "user", "content": JUDGE_PROMPT.format(
        question="Is water wet?", reference="no", prediction="no")}]
    assert all(h["Authorization"] == "Bearer sk-test" for h in server.headers)


def test_prompt_is_the_released_text() -> None:
    p = build_prompt("Q?", "G", "P")
    assert p.startswith("Given a Question and its Golden Answer, verify whether the Predicted Answer is correct. "
                        "The prediction is correct if it fully aligns with the meaning and key information of "
                        "the Golden Answer. Respond with True if the prediction is correct and False otherwise.")
    assert "\n\n    Question: Q?\n    Golden Answer: G\n    Predicted Answer: P\n" in p
    assert build_prompt("{x}?", "{y}", None).count("{") == 2  # braces in the data are not format fields


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [("True", True, True), ("False", False, False), ("true", False, True), (" True.\n", False, True),
     ('"True"', False, True), ("**True**", False, True), ("It is True", False, False), (None, False, False)],
)
def test_parse_verdict(text: str | None, strict: bool, lenient: bool) -> None:
    assert parse_verdict(text, strict=True) is strict
    assert parse_verdict(text) is lenient


# -- retries and errors ----------------------------------------------------------------------------


def test_429_then_success_honours_retry_after(server: ChatServer, tmp_path: Path, no_sleep: list[float]) -> None:
    server.script = lambda i, body: (429, {"Retry-After": "7"}, {"error": "slow down"}) if i == 0 else None
    with make_judge(server, tmp_path, backoff_s=1000.0, max_backoff_s=1000.0) as judge:
        r = judge.judge_one("Capital of France?", "Paris", "Paris")
        assert (r.correct, judge.n_requests) == (True, 2)
    assert no_sleep == [7.0]  # the server's wait, not the (huge) backoff


def test_5xx_then_success_backs_off(server: ChatServer, tmp_path: Path, no_sleep: list[float]) -> None:
    server.script = lambda i, body: (503, {}, {"error": "busy"}) if i < 2 else None
    with make_judge(server, tmp_path, backoff_s=0.5, max_backoff_s=10.0) as judge:
        assert judge.judge_one("Capital of Italy?", "Rome", "Rome").correct
    assert len(server.requests) == 3
    assert len(no_sleep) == 2 and 0.25 <= no_sleep[0] <= 0.5 and 0.5 <= no_sleep[1] <= 1.0  # exponential


def test_timeout_then_success(server: ChatServer, tmp_path: Path) -> None:
    def script(i: int, body: dict) -> Reply | None:
        if i == 0:
            server.slow.wait(10)  # far past the client's timeout
        return None

    server.script = script
    with make_judge(server, tmp_path, timeout_s=0.3) as judge:
        assert judge.judge_one("Capital of France?", "Paris", "Paris").correct
        assert judge.n_requests == 2


def test_timeouts_exhaust_retries_with_a_clear_error(server: ChatServer, tmp_path: Path) -> None:
    server.script = lambda i, body: server.slow.wait(10) and None
    with make_judge(server, tmp_path, timeout_s=0.2, max_retries=1) as judge:
        with pytest.raises(JudgeError, match=r"failed 2 time\(s\), last: timed out after 0.2 s"):
            judge.judge_one("q", "a", "a")


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path, no_sleep: list[float]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Judge(base_url=f"http://127.0.0.1:{port}/v1", model="m", cache_path=tmp_path / "c.sqlite",
               max_retries=2) as judge:
        with pytest.raises(JudgeError) as exc:
            judge.judge_one("q", "a", "a")
    msg = str(exc.value)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in msg and "cannot connect" in msg
    assert "R1SEARCHER_JUDGE_BASE_URL" in msg
    assert len(no_sleep) == 2


def test_client_errors_are_not_retried(server: ChatServer, tmp_path: Path) -> None:
    server.script = lambda i, body: (401, {}, {"error": {"message": "bad key"}})
    with make_judge(server, tmp_path) as judge:
        with pytest.raises(JudgeError, match="HTTP 401.*bad key"):
            judge.judge_one("q", "a", "a")
    assert len(server.requests) == 1


def test_malformed_reply_is_a_clear_error(server: ChatServer, tmp_path: Path) -> None:
    server.script = lambda i, body: (200, {}, {"choices": []})
    with make_judge(server, tmp_path) as judge:
        with pytest.raises(JudgeError, match=r"without choices\[0\].message.content"):
            judge.judge_one("q", "a", "a")


def test_wrong_path_is_reported(server: ChatServer, tmp_path: Path) -> None:
    with Judge(base_url=server.url.replace("/v1", "/v2"), model="m", cache_path=tmp_path / "c.sqlite") as judge:
        with pytest.raises(JudgeError, match="HTTP 404"):
            judge.judge_one("q", "a", "a")


# -- cache -----------------------------------------------------------------------------------------


def test_second_run_makes_zero_requests(server: ChatServer, tmp_path: Path) -> None:
    with make_judge(server, tmp_path) as judge:
        first = judge.judge_many(ITEMS)
    n = len(server.requests)
    assert n == 3
    with make_judge(server, tmp_path) as judge:
        second = judge.judge_many(ITEMS)
        assert (judge.n_requests, judge.n_cached) == (0, 3)
    assert len(server.requests) == n
    assert [r.output for r in second] == [r.output for r in first] and all(r.cached for r in second)
    # another model, or a changed prediction, is a different key
    with Judge(base_url=server.url, model="other", cache_path=tmp_path / "judge.sqlite") as judge:
        judge.judge_one(*ITEMS[0])
    with make_judge(server, tmp_path) as judge:
        judge.judge_one(ITEMS[0][0], ITEMS[0][1], "Lyon")
    assert len(server.requests) == n + 2
    assert len(JudgeCache(tmp_path / "judge.sqlite")) == 5


def test_duplicates_are_judged_once_and_cache_can_be_off(server: ChatServer, tmp_path: Path) -> None:
    with make_judge(server, tmp_path, use_cache=False) as judge:
        res = judge.judge_many([ITEMS[0], ITEMS[0], ITEMS[1]])
        assert [r.correct for r in res] == [True, True, False]
        judge.judge_many([ITEMS[0]])
    assert len(server.requests) == 3  # 2 unique, then 1 again: nothing cached
    assert not (tmp_path / "judge.sqlite").exists()


def test_failure_keeps_what_was_judged(server: ChatServer, tmp_path: Path) -> None:
    server.script = lambda i, body: (400, {}, {"error": "no"}) if "Italy" in body["messages"][0]["content"] else None
    with make_judge(server, tmp_path, concurrency=1) as judge:
        with pytest.raises(JudgeError, match="HTTP 400"):
            judge.judge_many(ITEMS)
    cache = JudgeCache(tmp_path / "judge.sqlite")
    assert 1 <= len(cache) <= 2  # France (and perhaps the bool item) were stored before the failure
    assert cache.get(JudgeCache.key("judge-test", ITEMS[0][0], "Paris", " Paris ")) == "True"


# -- concurrency -----------------------------------------------------------------------------------


def test_concurrency_limit_is_reached_and_never_exceeded(server: ChatServer, tmp_path: Path) -> None:
    limit = 3
    server.barrier = threading.Barrier(limit, timeout=10)  # each request waits until `limit` are in flight
    items = [(f"question {i}?", "x", "x") for i in range(2 * limit)]
    with make_judge(server, tmp_path, concurrency=limit) as judge:
        assert all(r.correct for r in judge.judge_many(items))
    assert len(server.requests) == 2 * limit
    assert server.max_inflight == limit
    assert not server.barrier.broken


# -- configuration ---------------------------------------------------------------------------------


def test_configuration_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("R1SEARCHER_JUDGE_BASE_URL", "R1SEARCHER_JUDGE_MODEL", "R1SEARCHER_JUDGE_API_KEY",
                 "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    c = tmp_path / "c.sqlite"
    with Judge(cache_path=c) as j:
        assert (j.base_url, j.model, j.api_key) == ("https://api.openai.com/v1", "gpt-4o-mini", None)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai.local/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    with Judge(cache_path=c) as j:
        assert (j.base_url, j.api_key) == ("http://openai.local/v1", "sk-openai")
    monkeypatch.setenv("R1SEARCHER_JUDGE_BASE_URL", "http://judge.local/v1/chat/completions")
    monkeypatch.setenv("R1SEARCHER_JUDGE_MODEL", "qwen-judge")
    monkeypatch.setenv("R1SEARCHER_JUDGE_API_KEY", "sk-judge")
    with Judge(cache_path=c) as j:
        assert (j.base_url, j.model, j.api_key) == ("http://judge.local/v1", "qwen-judge", "sk-judge")
    with Judge("http://arg.local/v1", "arg-model", "sk-arg", cache_path=c) as j:
        assert (j.base_url, j.model, j.api_key) == ("http://arg.local/v1", "arg-model", "sk-arg")
    with pytest.raises(ValueError, match="concurrency"):
        Judge(cache_path=c, concurrency=0)


# -- the CLI with a live judge ---------------------------------------------------------------------


def test_cli_metrics_with_live_judge(server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "preds.jsonl"
    rows = [
        {"question": "Capital of France?", "answer": "Paris", "answers": ["Paris"], "pred_ans": "Paris"},
        {"question": "Capital of Italy?", "answer": "Rome", "answers": ["Rome"], "pred_ans": "Milan"},
        {"question": "Largest planet?", "answer": "Jupiter", "answers": ["Jupiter"], "pred_ans": "jupiter",
         "gpt4o_output": "False"},  # a stored reply wins over a fresh one
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["metrics", str(f), "--json", "--judge", "--judge-base-url", server.url, "--judge-model", "m",
            "--judge-cache", str(tmp_path / "cli.sqlite")]
    assert cli.main(argv) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"n": 3, "em": 66.7, "cover_em": 66.7, "f1": 66.7, "judge": 33.3}
    assert "2 judged, 0 from cache, 2 request(s)" in cap.err
    assert len(server.requests) == 2
    assert cli.main(argv) == 0  # rerun: all from the cache
    assert "2 judged, 2 from cache, 0 request(s)" in capsys.readouterr().err
    assert len(server.requests) == 2


def test_cli_metrics_takes_the_judge_section_of_a_config_and_flags_win(server: ChatServer, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "preds.jsonl"
    f.write_text(json.dumps({"question": "Capital of France?", "answer": "Paris", "pred_ans": "Paris"}) + "\n")
    conf = tmp_path / "judge.yaml"
    conf.write_text(f"judge:\n  base_url: {server.url}\n  model: from-config\n  cache: {tmp_path / 'j.sqlite'}\n")
    assert cli.main(["metrics", str(f), "--json", "--judge", "--config", str(conf)]) == 0
    assert "judge from-config at" in capsys.readouterr().err and len(server.requests) == 1
    assert cli.main(["metrics", str(f), "--json", "--judge", "--config", str(conf), "--judge-model", "flag"]) == 0
    assert "judge flag at" in capsys.readouterr().err and len(server.requests) == 2  # another model: not cached
    assert cli.main(["metrics", str(f), "--judge", "--config", str(conf), "--judge-concurrency", "0"]) == 2
    assert "judge.concurrency: must be >= 1, got 0" in capsys.readouterr().err


def test_cli_metrics_judge_unreachable(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_sleep: list[float]) -> None:
    f = tmp_path / "preds.jsonl"
    f.write_text(json.dumps({"question": "q", "answer": "a", "pred_ans": "a"}) + "\n", encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main(["metrics", str(f), "--judge", "--judge-base-url", f"http://127.0.0.1:{port}/v1",
                     "--no-judge-cache"]) == 2
    err = capsys.readouterr().err
    assert "r1searcher metrics: error: judge endpoint" in err and "cannot connect" in err
