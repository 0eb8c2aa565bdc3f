"""``r1searcher serve-agent`` end to end: the real CLI in a subprocess (a saved tiny model over the
SmolLM2 tokenizer, a saved BM25 index), driven by the real ``openai`` client over loopback.

Question ``i`` mentions ``zebra{i}``; the server's steer (``rollout/steer.py``: forced tokens through
the real engine, set by the launcher below) makes that request search ``zebra{i} home`` (and, for odd
``i``, ``town{i} river``) and answer ``town{i}``. Passage ``p{i}`` is the only one holding those
words, so each reply's searches and passages show whose they are. Questions without ``zebra`` run
free: the random model writes until a limit, the long requests the queue and disconnect tests need.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

openai = pytest.importorskip("openai")

from conftest import REPO, make_tiny_causal_lm  # noqa: E402
from r1searcher.cli import build_parser, main  # noqa: E402
from r1searcher.retrieval.base import Passage  # noqa: E402
from r1searcher.retrieval.bm25 import BM25Index  # noqa: E402

N_PASSAGES = 100
FREE = "Tell me a long story about nothing."  # no zebra: not steered

LAUNCHER = r"""
import re, sys
from r1searcher.cli import build_parser
from r1searcher.commands import serve_agent
from r1searcher.models.loading import load_tokenizer
from r1searcher.rollout.steer import script_tokens
from r1searcher.rollout.tags import ANSWER_CLOSE, ANSWER_OPEN, QUERY_CLOSE, QUERY_OPEN, THINK_CLOSE

args = build_parser().parse_args(["serve-agent", *sys.argv[1:]])
tok = load_tokenizer(args.model)
scripts = {}

def script(question):
    if question not in scripts:
        m = re.search(r"zebra(\d+)", question)
        if m is None:
            scripts[question] = ()
        else:
            i = int(m.group(1))
            segs = [f" Let me look. {QUERY_OPEN} zebra{i} home {QUERY_CLOSE}"]
            if i % 2:
                segs.append(f" And the town. {QUERY_OPEN} town{i} river {QUERY_CLOSE}")
            segs.append(f" Found it. {THINK_CLOSE}\n\n{ANSWER_OPEN} town{i} {ANSWER_CLOSE}")
            scripts[question] = script_tokens(tok, segs)
    return scripts[question]

def steer(row):
    s = script(row.question)
    k = row.n_policy_tokens
    return int(s[k]) if k < len(s) else None

sys.exit(serve_agent.run(args, steer=steer))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, smollm_tokenizer):
    root = tmp_path_factory.mktemp("agent")
    model = make_tiny_causal_lm(smollm_tokenizer)
    model.save_pretrained(root / "model")
    smollm_tokenizer.save_pretrained(root / "model")
    BM25Index.build([Passage(f"p{i}", f"Animal {i}", f"the zebra{i} has its home in town{i} by the river{i}")
                     for i in range(N_PASSAGES)]).save(root / "index")
    return root


class Server:
    """The CLI in a subprocess on a free port; ``health()`` reads its ``/health``."""

    def __init__(self, saved, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "--model", str(saved / "model"), "--index", str(saved / "index"),
             "--port", str(self.port), "--threads", "1", "--served-model-name", "tiny-searcher", *extra,
             "rollout.few_shot=false", "rollout.max_new_tokens_per_turn=4096"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve-agent exited {self.proc.returncode}: {self.proc.stdout.read()[-2000:]}")
            try:
                httpx.get(self.url + "/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("serve-agent did not start within 180 s") from None
                time.sleep(0.3)

    def client(self, timeout: float = 120.0):
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=timeout)

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def wait_for(self, condition, timeout: float = 60.0) -> dict:
        """/health once ``condition(health)`` holds (fails after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if condition(h):
                return h
            assert time.monotonic() < deadline, f"condition not met within {timeout} s: {h}"
            time.sleep(0.05)

    def wait_idle(self, timeout: float = 60.0) -> dict:
        """/health once nothing is queued, held or running."""
        return self.wait_for(lambda h: h["in_flight"] == 0 and h["queue_depth"] == 0 and h["running"] == 0, timeout)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server(saved):
    s = Server(saved, "--max-batch", "8", "--max-queue", "16", "--max-wait-ms", "20")
    yield s
    s.close()


def ext(obj) -> dict:
    """The ``r1searcher`` extension field of a message or a delta (pydantic keeps unknown fields)."""
    return (obj.model_extra or {}).get("r1searcher")


def ask(client, i: int, **kw):
    return client.chat.completions.create(
        model="tiny-searcher", messages=[{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": f"Where is the home of zebra{i}?"}], **kw)


def check_own(i: int, searches: list[dict]) -> None:
    """Request i's searches are its own queries, each answered with its own passage first."""
    expected = [f"zebra{i} home"] + ([f"town{i} river"] if i % 2 else [])
    assert [s["query"] for s in searches] == expected
    for s in searches:
        assert s["passages"][0]["id"] == f"p{i}", (i, s)


def test_models_and_health(server):
    assert [m.id for m in server.client().models.list()] == ["tiny-searcher"]
    h = server.health()
    assert h["status"] == "ok" and h["model"] == "tiny-searcher" and h["retriever"].startswith("index ")
    assert h["memory"]["rss_bytes"] > 0 and h["max_batch"] == 8 and h["max_queue"] == 16


def test_completion_answers_with_its_searches(server):
    r = ask(server.client(), 3, max_tokens=200)
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.model == "tiny-searcher"
    assert choice.message.role == "assistant" and choice.message.content == "town3"
    assert choice.finish_reason == "stop"
    e = ext(choice.message)
    check_own(3, e["searches"])
    assert e["stop_reason"] == "answer" and e["n_searches"] == 2
    assert "Let me look." in e["reasoning"] and "<|begin_of_documents|>" not in e["reasoning"]
    assert "<|begin_of_documents|>" in e["trajectory"] and "zebra3" in e["trajectory"]
    assert 0 < r.usage.completion_tokens < 200 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_sends_search_events_before_the_answer(server):
    stream = ask(server.client(), 5, max_tokens=200, stream=True, stream_options={"include_usage": True})
    events, content, finish, usage = [], [], None, None
    for ch in stream:
        assert ch.object == "chat.completion.chunk"
        if ch.usage is not None:
            usage = ch.usage
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        e = ext(d)
        if e is not None:
            assert not content, "a search event came after the answer"
            events.append(e)
        if d.content:
            content.append(d.content)
        if ch.choices[0].finish_reason:
            finish = ch.choices[0].finish_reason
    kinds = [e["event"] for e in events]
    assert kinds == ["search", "passages", "search", "passages", "done"]
    assert [e["query"] for e in events[:4]] == ["zebra5 home"] * 2 + ["town5 river"] * 2
    check_own(5, [e for e in events if e["event"] == "passages"])
    assert "".join(content) == "town5" and finish == "stop"
    assert events[-1]["stop_reason"] == "answer" and "trajectory" in events[-1]
    assert usage is not None and usage.completion_tokens > 0


def test_bad_requests_are_4xx(server):
    url = server.url + "/v1/chat/completions"
    user = [{"role": "user", "content": "hi zebra1"}]
    cases = [
        (b"{bad json", 400, "invalid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ({"model": "tiny-searcher"}, 422, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, 422, "no user message"),
        ({"messages": [{"role": "user", "content": "   "}]}, 422, "empty"),
        ({"messages": [{"role": "user", "content": 7}]}, 422, "content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 422, "only 'text'"),
        ({"messages": "hello"}, 422, "messages"),
        ({"messages": user, "max_tokens": "ten"}, 422, "max_tokens"),
        ({"messages": user, "max_tokens": 10**9}, 422, "max_tokens"),
        ({"messages": user, "max_completion_tokens": 0}, 422, "max_completion_tokens"),
        ({"messages": user, "max_searches": -1}, 422, "max_searches"),
        ({"messages": user, "max_searches": True}, 422, "max_searches"),
        ({"messages": user, "temperature": 5}, 422, "temperature"),
        ({"messages": user, "top_p": 0}, 422, "top_p"),
        ({"messages": user, "n": 2}, 422, "'n'"),
        ({"messages": user, "stream": "yes"}, 422, "stream"),
        ({"messages": user, "timeout_s": 10**6}, 422, "timeout_s"),
        ({"messages": user, "model": "gpt-4o"}, 404, "not served"),
        ({"messages": [{"role": "user", "content": "x" * 9000}]}, 413, "limit"),
    ]
    with httpx.Client(timeout=30) as c:
        for body, status, words in cases:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = c.post(url, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == status, (body, r.status_code, r.text)
            assert words in r.json()["error"]["message"], (body, r.text)
        assert c.post(url, content=b"x" * (2 << 20)).status_code == 413
        assert c.get(url).status_code == 405
    with pytest.raises(openai.UnprocessableEntityError, match="no user message"):
        server.client().chat.completions.create(model="tiny-searcher", messages=[{"role": "system", "content": "x"}])
    h = server.wait_idle()
    assert h["errors_4xx"] >= len(cases) + 2 and h["errors_5xx"] == 0


def test_request_time_limit_ends_a_long_request(server):
    r = server.client().chat.completions.create(
        model="tiny-searcher", messages=[{"role": "user", "content": FREE}], max_tokens=4000,
        extra_body={"timeout_s": 0.5})
    assert r.choices[0].finish_reason == "length"
    assert ext(r.choices[0].message)["stop_reason"] == "timeout"
    assert r.usage.completion_tokens < 4000
    server.wait_idle()


def test_client_disconnect_mid_stream_frees_its_slot(server):
    before = server.health()
    client = server.client()
    stream = client.chat.completions.create(model="tiny-searcher", messages=[{"role": "user", "content": FREE}],
                                            max_tokens=4000, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    assert server.health()["in_flight"] == 1
    stream.close()  # hang up mid-generation
    h = server.wait_idle()
    assert h["cancelled"] == before["cancelled"] + 1 and h["disconnects"] == before["disconnects"] + 1


def test_a_new_request_joins_the_running_batch_and_is_not_held_up(server):
    client = server.client()
    long_one = client.chat.completions.create(model="tiny-searcher", messages=[{"role": "user", "content": FREE}],
                                              max_tokens=4000, stream=True)
    next(iter(long_one))
    server.wait_for(lambda h: h["running"] == 1)
    r = ask(client, 7, max_tokens=200)  # searches twice and answers while the long one writes on
    h = server.health()
    try:
        assert r.choices[0].message.content == "town7"
        check_own(7, ext(r.choices[0].message)["searches"])
        assert ext(r.choices[0].message)["batch_size"] == 2  # it ran beside the long one
        assert h["running"] == 1 and h["in_flight"] == 1, h  # which is still writing
    finally:
        long_one.close()
    server.wait_idle()


def test_full_batch_then_queue_timeout_504_and_full_queue_429_and_hangups_free_all(server):
    client = server.client()

    def long_stream():
        return client.chat.completions.create(model="tiny-searcher", messages=[{"role": "user", "content": FREE}],
                                              max_tokens=4000, stream=True)

    streams = []
    try:
        streams += [long_stream() for _ in range(8)]
        server.wait_for(lambda h: h["running"] == 8)  # the batch is full: the next requests wait
        with pytest.raises(openai.InternalServerError, match="waiting in the queue") as waited:
            ask(client, 1, extra_body={"timeout_s": 0.5})
        assert waited.value.status_code == 504
        streams += [long_stream() for _ in range(16)]
        assert server.health()["queue_depth"] == 16
        with pytest.raises(openai.RateLimitError, match="queue is full") as refused:
            long_stream()
        assert int(refused.value.response.headers["retry-after"]) >= 1
    finally:
        for s in streams:
            s.close()
    h = server.wait_idle()
    assert h["rejected"] >= 1


def test_16_concurrent_clients_no_crosstalk_and_flat_rss(server):
    clients = [server.client() for _ in range(16)]
    errors: list[str] = []

    def one(c: int, j: int) -> None:
        i = c * 5 + j
        try:
            if j % 2:  # streamed: collect the passages events
                got, content = [], ""
                for ch in ask(clients[c], i, max_tokens=200, stream=True):
                    if ch.choices and ext(ch.choices[0].delta) and ext(ch.choices[0].delta)["event"] == "passages":
                        got.append(ext(ch.choices[0].delta))
                    if ch.choices and ch.choices[0].delta.content:
                        content += ch.choices[0].delta.content
            else:
                r = ask(clients[c], i, max_tokens=200)
                got, content = ext(r.choices[0].message)["searches"], r.choices[0].message.content
            assert content == f"town{i}", (i, content)
            check_own(i, got)
        except Exception as e:  # noqa: BLE001 - reported below with the request's number
            errors.append(f"request {i}: {type(e).__name__}: {e}")

    def round_(per_client: int) -> None:
        def client_loop(c: int) -> None:
            for j in range(per_client):
                one(c, j)

        threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    round_(1)  # warm-up: the batch shapes and allocator pools settle
    h0 = server.wait_idle()
    rss0 = h0["memory"]["rss_bytes"]
    round_(5)
    h = server.wait_idle()
    rss1 = h["memory"]["rss_bytes"]
    rows_per_step = (h["decode_rows"] - h0["decode_rows"]) / (h["decode_steps"] - h0["decode_steps"])
    print(f"\nserver RSS after warm-up {rss0 / 2**20:.1f} MiB, after 16 clients x 5 requests {rss1 / 2**20:.1f} MiB "
          f"({100 * (rss1 / rss0 - 1):+.1f}%); {rows_per_step:.2f} rows per decode step")
    assert not errors, "\n".join(errors[:5])
    assert rows_per_step > 1.5, "requests were not batched together"
    assert rss1 <= 1.10 * rss0


def test_cli_refuses_bad_limits_before_loading(saved, capsys):
    rc = main(["serve-agent", "--model", str(saved / "model"), "--index", str(saved / "index"), "--max-batch", "0"])
    assert rc == 2 and "--max-batch must be >= 1" in capsys.readouterr().err
    rc = main(["serve-agent", "--model", str(saved / "model"), "--index", str(saved / "index"),
               "--max-tokens", "10", "--default-max-tokens", "20"])
    assert rc == 2 and "--default-max-tokens 20" in capsys.readouterr().err


def test_port_is_checked_and_port_0_serves_on_the_port_it_prints(saved):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve-agent", "--model", "x", "--index", "y", "--port", "99999"])
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "r1searcher.cli", "serve-agent", "--model", str(saved / "model"), "--index",
         str(saved / "index"), "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 180
        while "serving" not in line:
            assert proc.poll() is None and time.monotonic() < deadline, line
            line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split()[0]
        port = int(url.rsplit(":", 1)[1])
        assert port != 0
        assert httpx.get(url + "/health", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
