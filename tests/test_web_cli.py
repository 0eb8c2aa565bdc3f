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
