"""``r1searcher search --web`` / ``serve --web`` through ``r1searcher.cli.main`` against the loopback
web of tests/test_web_world.py, configured only by environment variables."""

from __future__ import annotations

import json

from test_web import HITS, Q, populate
from test_web_world import KEY, World, clean_env, world  # noqa: F401

from r1searcher.cli import main


def _env(monkeypatch, w: World, provider: str = "brave") -> None:
    w.provider = provider
    monkeypatch.setenv("R1SEARCHER_WEB_PROVIDER", provider)
    monkeypatch.setenv("R1SEARCHER_WEB_BASE_URL", w.url)
    monkeypatch.setenv("R1SEARCHER_WEB_API_KEY", KEY)
    monkeypatch.setenv("R1SEARCHER_WEB_ALLOW_PRIVATE_URLS", "1")  # the fake web's pages are on loopback


def test_search_web_json(world, monkeypatch, capsys):
    populate(world)
    _env(monkeypatch, world)
    assert main(["search", "--web", Q, "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["query"] == Q and len(rec["passages"]) == 3  # -k defaults to the paper's 3 with --web
    assert all(set(p) == {"id", "title", "text", "score"} for p in rec["passages"])
    top = rec["passages"][0]
    assert top["id"] == f"{world.url}/wiki/Alan_Turing" and "Maida Vale" in top["text"]
    assert {p["id"] for p in rec["passages"]} == {world.absolute(u) for _, u, _ in HITS}
    sent = world.count()

    monkeypatch.setenv("R1SEARCHER_SUMMARY_BASE_URL", f"{world.url}/v1")
    monkeypatch.setenv("R1SEARCHER_SUMMARY_MODEL", "tiny-summariser")
    assert main(["search", "--web", Q, "-k", "1"]) == 0  # text output, summariser from the environment
    out = capsys.readouterr().out
    assert out.startswith(f"# {Q}\n  (1) [1.000] Alan Turing - Wikipedia: Summary: ")
    assert world.count("search") + world.count("page") == sent  # hits and pages came from the disk cache
    assert world.count("chat") == 2  # the two fetched pages were summarised; the 404 page's snippet was not


def test_search_web_errors_are_one_line(world, monkeypatch, capsys):
    _env(monkeypatch, world)
    monkeypatch.delenv("R1SEARCHER_WEB_API_KEY")
    assert main(["search", "--web", "anything"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1searcher search: error: web search provider 'brave'") and "R1SEARCHER_WEB_API_KEY" in err
    assert main(["search", "anything"]) == 2
    assert "either --index DIR or --web" in capsys.readouterr().err
    assert world.count() == 0


def test_serve_web_speaks_both_retrieval_apis(world, monkeypatch, tmp_path):
    """``serve --web`` in its own process; HttpRetriever (what rollouts use) reads it over both APIs.
    The base URL carries user:password, which neither /health nor the server's log shows."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from r1searcher.retrieval.client import HttpRetriever

    populate(world)
    _env(monkeypatch, world, "serper")
    monkeypatch.setenv("R1SEARCHER_WEB_BASE_URL", world.url.replace("http://", "http://carol:pa55word-x@"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "r1searcher.cli", "serve", "--web", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        health = None
        for _ in range(150):  # up to ~30 s for the process to start
            if proc.poll() is not None:
                break
            try:
                health = httpx.get(f"{url}/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health is not None, (tmp_path / "serve.log").read_text()
        assert health["kind"] == "web" and health["provider"] == "serper" and health["endpoint"] == f"{world.url}/search"
        assert "pa55word" not in json.dumps(health) and health["allow_private_urls"] is True
        for api in ("queries", "retrieve"):
            with HttpRetriever(url, api=api, retries=0) as client:
                [res] = client.search([Q], 3)
            assert res[0].id == f"{world.url}/wiki/Alan_Turing" and res[0].title == "Alan Turing - Wikipedia"
            assert "Maida Vale" in res[0].text and len(res) == 3
        assert world.count("search") == 1  # the second API call was served from the cache
        log.flush()
        shown = (tmp_path / "serve.log").read_text()
        assert f"serper at {world.url}/search) on {url} " in shown and "pa55word" not in shown
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_ask_web_builds_the_web_retriever_from_the_environment(world, monkeypatch, capsys):
    import argparse

    from r1searcher.commands._common import open_retriever as _retriever
    from r1searcher.config import load_config
    from r1searcher.retrieval.web.search import WebRetriever

    _env(monkeypatch, world, "bing")
    populate(world)
    r = _retriever(argparse.Namespace(web=True, index=None, server=None), load_config(None, []))
    try:
        assert isinstance(r, WebRetriever) and r.describe()["endpoint"] == f"{world.url}/v7.0/search"
        assert r.search([Q], 1)[0][0].id == f"{world.url}/wiki/Alan_Turing"
    finally:
        r.close()
    monkeypatch.delenv("R1SEARCHER_WEB_API_KEY")  # the error comes before any model is loaded
    assert main(["ask", "--web", "Who was Alan Turing?"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1searcher ask: error: web search provider 'bing'") and "R1SEARCHER_WEB_API_KEY" in err
