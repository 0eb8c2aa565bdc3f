"""The low-level OpenAI-compatible chat client (``r1searcher.util.chat``) against a real loopback server:
the request it sends, retries, its errors (label and hint), and that the judge and the web summariser
both use it while it imports neither."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r1searcher.util import chat as chat_mod
from r1searcher.util.chat import ChatClient, ChatError


class Server:
    """Answers each POST with ``replies[i]`` (status, body), the last one repeated; records bodies."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, object]] = [(200, {"choices": [{"message": {"content": "hi"}}]})]
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.url = ""


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            state.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            state.auth.append(self.headers.get("Authorization"))
            status, body = state.replies[min(len(state.bodies) - 1, len(state.replies) - 1)]
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    out: list[float] = []
    monkeypatch.setattr(chat_mod, "_sleep", out.append)
    return out


def test_complete_sends_one_user_message(server: Server) -> None:
    with ChatClient(server.url + "/chat/completions", "m", "sk-1", max_tokens=7, temperature=None) as chat:
        assert chat.url == server.url + "/chat/completions" and chat.base_url == server.url
        assert chat.complete("Say hi.") == "hi"
        assert chat.n_requests == 1
    assert server.bodies == [{"model": "m", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 7}]
    assert server.auth == ["Bearer sk-1"]


def test_retries_then_answers(server: Server, waits: list[float]) -> None:
    server.replies = [(503, {"error": "busy"}), (429, {"error": "slow"}), (200, {"choices": [{"message": {"content": "ok"}}]})]
    with ChatClient(server.url, "m", backoff_s=0.01) as chat:
        assert chat.complete("x") == "ok" and chat.n_requests == 3
    assert len(waits) == 2


def test_errors_carry_the_label_and_the_hint(server: Server, waits: list[float]) -> None:
    server.replies = [(500, {"error": "down"})]
    with ChatClient(server.url, "m", max_retries=1, label="test endpoint", hint=" Check X.") as chat:
        with pytest.raises(ChatError) as e:
            chat.complete("x")
    assert str(e.value).startswith(f"test endpoint {server.url}/chat/completions failed 2 time(s), last: HTTP 500")
    assert str(e.value).endswith(". Check X.")
    server.replies = [(401, {"error": "key"})]
    with ChatClient(server.url, "m") as chat:
        with pytest.raises(ChatError, match=r"^chat endpoint .* answered HTTP 401"):
            chat.complete("x")
    server.replies = [(200, {"choices": []})]
    with ChatClient(server.url, "m") as chat:
        with pytest.raises(ChatError, match=r"without choices\[0\]\.message\.content"):
            chat.complete("x")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ChatClient("http://127.0.0.1:9/v1", "m", concurrency=0)
    with pytest.raises(ValueError, match="max_retries"):
        ChatClient("http://127.0.0.1:9/v1", "m", max_retries=-1)


def test_the_judge_and_the_summariser_share_it(server: Server, tmp_path) -> None:
    from r1searcher.eval.judge import Judge, JudgeError

    server.replies = [(400, {"error": "bad"})]
    with Judge(server.url, "m", cache_path=tmp_path / "j.sqlite") as judge:
        assert isinstance(judge.chat, ChatClient)
        with pytest.raises(JudgeError, match=r"^judge endpoint .* answered HTTP 400"):
            judge.judge_one("q", "a", "a")
    assert issubclass(JudgeError, ChatError)


def test_chat_and_the_summariser_do_not_import_the_judge() -> None:
    """The web summariser is retrieval, a lower layer than evaluation: it must not load the judge."""
    code = ("import sys\n"
            "from r1searcher.retrieval.web.summarize import Summarizer\n"
            "from r1searcher.retrieval.web.search import WebConfig\n"
            "s = Summarizer(WebConfig(summary_base_url='http://127.0.0.1:9/v1', summary_model='m'), None)\n"
            "s.close()\n"
            "print(sorted(m for m in sys.modules if m.startswith('r1searcher.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    loaded = out.strip()
    assert "r1searcher.util.chat" in loaded and "r1searcher.eval.judge" not in loaded
