"""A small web on loopback for the web-search tests: one real HTTP server (stdlib, threaded) that
speaks the four search APIs' request and reply shapes, serves HTML/text pages, and answers the
OpenAI chat-completions shape as the summariser. It records every request so tests can count them.

Imported by the other ``test_web*`` modules (it holds no tests itself)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

KEY = "test-key-123"
KEY_HEADERS = {"serper": "X-API-KEY", "bing": "Ocp-Apim-Subscription-Key", "brave": "X-Subscription-Token"}
ENV_VARS = (
    "R1SEARCHER_WEB_PROVIDER", "R1SEARCHER_WEB_BASE_URL", "R1SEARCHER_WEB_API_KEY", "R1SEARCHER_WEB_QUERY_SUFFIX",
    "R1SEARCHER_WEB_RPS", "R1SEARCHER_CACHE_DIR", "R1SEARCHER_SUMMARY_BASE_URL", "R1SEARCHER_SUMMARY_MODEL",
    "R1SEARCHER_SUMMARY_API_KEY", "R1SEARCHER_JUDGE_BASE_URL", "R1SEARCHER_JUDGE_MODEL", "R1SEARCHER_JUDGE_API_KEY",
    "OPENAI_BASE_URL", "OPENAI_API_KEY", "R1SEARCHER_WEB_ALLOW_PRIVATE_URLS", "R1SEARCHER_CACHE",
)

Reply = tuple[int, dict[str, str], bytes]


def html_page(title: str, *paragraphs: str, extra: str = "") -> bytes:
    """A page with the boilerplate real sites have: script, style, navigation menu, footer."""
    body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<script>var trackingScriptToken = 1;</script><style>p {{ color: red }}</style></head><body>"
        "<nav><ul><li><a href='/'>Main page</a></li><li><a href='/r'>Random navigationlink</a></li></ul></nav>"
        f"<div id='content'><h1>{title}</h1>\n{body}{extra}</div>"
        "<footer>Privacy policy footerword | About us</footer></body></html>"
    ).encode()


def provider_reply(provider: str, hits: list[tuple[str, str, str]], query: str) -> dict:
    """The reply each real API sends, extra fields included, for hits (title, url, snippet)."""
    if provider == "serper":
        return {
            "searchParameters": {"q": query, "type": "search", "engine": "google"},
            "knowledgeGraph": {"title": "Something", "description": "not an organic hit"},
            "organic": [
                {"title": t, "link": u, "snippet": s, "position": i, "sitelinks": [{"title": "x", "link": u + "#x"}]}
                for i, (t, u, s) in enumerate(hits, 1)
            ],
            "relatedSearches": [{"query": "more"}],
        }
    if provider == "bing":
        return {
            "_type": "SearchResponse",
            "queryContext": {"originalQuery": query},
            "webPages": {
                "webSearchUrl": "https://www.bing.example/search?q=x",
                "totalEstimatedMatches": 1000,
                "value": [
                    {"id": f"https://api.bing.example/api/v7/#WebPages.{i}", "name": t, "url": u,
                     "displayUrl": u, "snippet": s, "language": "en", "isFamilyFriendly": True}
                    for i, (t, u, s) in enumerate(hits)
                ],
            },
            "rankingResponse": {"mainline": {"items": []}},
        }
    if provider == "brave":
        return {
            "type": "search",
            "query": {"original": query},
            "mixed": {"type": "mixed", "main": []},
            "web": {
                "type": "search",
                "results": [
                    {"title": t, "url": u, "description": s.replace(query.split()[0], f"<strong>{query.split()[0]}</strong>"),
                     "type": "search_result", "language": "en", "profile": {"name": "site"}}
                    for t, u, s in hits
                ],
            },
        }
    if provider == "searxng":
        return {
            "query": query,
            "number_of_results": 0,
            "results": [
                {"url": u, "title": t, "content": s, "engine": "duckduckgo", "engines": ["duckduckgo"],
                 "score": 1.0 / i, "category": "general", "parsed_url": ["http", "x", "/", "", "", ""]}
                for i, (t, u, s) in enumerate(hits, 1)
            ],
            "answers": [], "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": [],
        }
    raise ValueError(provider)


def summary_reply(prompt: str) -> str:
    """A deterministic "model": the first page line that shares a word (> 3 letters) with the query, else None."""
    query = prompt.split("[Search Query]\n", 1)[1].split("\n\n[Webpage Content]", 1)[0]
    doc = prompt.split("[Webpage Content]\n", 1)[1].rsplit("\n\n## Output:", 1)[0]
    words = {w.lower() for w in query.split() if len(w) > 3}
    for line in doc.splitlines():
        if words & {w.lower().strip(".,") for w in line.split()}:
            return f"[Exacted Content]: Summary: {line.strip()}"
    return "[Exacted Content]: None"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class World:
    """The server's state. ``hits`` maps a query to (title, path or URL, snippet); ``pages`` maps a
    path to (status, content type, body); ``script(route, n, request)`` may override any reply."""

    provider: str = "serper"
    url: str = ""
    hits: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    pages: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    script: Callable[[str, int, Request], Reply | None] = lambda route, n, req: None
    requests: list[Request] = field(default_factory=list)
    page_barrier: threading.Barrier | None = None
    inflight: int = 0
    max_inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, route: str | None = None) -> int:
        """Requests so far, all or one route (``search``, ``page``, ``chat``)."""
        return sum(1 for r in self.requests if route is None or _route(r) == route)

    def absolute(self, link: str) -> str:
        return link if "://" in link else f"{self.url}{link}"


def _route(r: Request) -> str:
    if r.path == "/v1/chat/completions":
        return "chat"
    if r.path in ("/search", "/v7.0/search", "/res/v1/web/search"):
        return "search"
    return "page"


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()


def _answer(world: World, req: Request, n: int) -> Reply:
    route = _route(req)
    scripted = world.script(route, n, req)
    if scripted is not None:
        return scripted
    if route == "chat":
        prompt = req.body["messages"][0]["content"]
        return _json(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": summary_reply(prompt)}}]})
    if route == "search":
        p = world.provider
        want = {"serper": ("POST", "/search"), "bing": ("GET", "/v7.0/search"),
                "brave": ("GET", "/res/v1/web/search"), "searxng": ("GET", "/search")}[p]
        if (req.method, req.path) != want:
            return _json(404, {"error": f"{p} has no {req.method} {req.path}"})
        if p in KEY_HEADERS and req.headers.get(KEY_HEADERS[p].lower()) != KEY:
            return _json(401 if p != "serper" else 403, {"message": "Unauthorized: invalid API key"})
        if p == "searxng" and req.query.get("format") != ["json"]:
            return _json(403, {"error": "format not allowed"})
        q = req.body["q"] if p == "serper" else req.query["q"][0]
        hits = [(t, world.absolute(u), s) for t, u, s in world.hits.get(q, [])]
        return _json(200, provider_reply(p, hits, q))
    if world.page_barrier is not None and req.path in world.pages:
        try:
            world.page_barrier.wait()
        except threading.BrokenBarrierError:
            return 500, {"Content-Type": "text/plain"}, b"barrier broken: pages were not fetched concurrently"
    status, ctype, body = world.pages.get(req.path, (404, "text/html", b"<html><body><p>Not found</p></body></html>"))
    return status, {"Content-Type": ctype}, body


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up (a byte cap, a timeout) is not a server error: don't print a traceback
    into the stderr that CLI tests read; any other handler error is still printed."""

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def start_world(**kw: Any) -> tuple[World, ThreadingHTTPServer]:
    world = World(**kw)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw) if raw else None
            req = Request(method, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, body)
            with world.lock:
                n = world.count(_route(req))
                world.requests.append(req)
                world.inflight += 1
                world.max_inflight = max(world.max_inflight, world.inflight)
            try:
                status, headers, payload = _answer(world, req, n)
            finally:
                with world.lock:
                    world.inflight -= 1
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client stopped reading at its byte cap
                pass

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

    server = _QuietServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    world.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return world, server


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No configuration leaks in from the developer's shell; the cache lives in the test's folder."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("R1SEARCHER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def world(clean_env) -> Iterator[World]:
    w, server = start_world()
    try:
        yield w
    finally:
        if w.page_barrier is not None:
            w.page_barrier.abort()
        server.shutdown()
        server.server_close()
