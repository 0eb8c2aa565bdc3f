"""WebRetriever end to end against a real loopback web (tests/test_web_world.py): the four providers'
reply shapes, concurrent page fetches, HTML → text, the byte cap and length budget, the summariser
and BM25 paths, snippet fallback, the on-disk cache, retries and clear errors."""

from __future__ import annotations

import multiprocessing
import socket
import threading

import pytest
from test_web_world import KEY, KEY_HEADERS, Request, World, _json, clean_env, html_page, start_world, world  # noqa: F401

from r1searcher.retrieval.base import Passage, Retriever, RetrieverError
from r1searcher.retrieval.web.providers import PROVIDERS, RateLimiter, RetryPolicy, SearchClient, get_provider
from r1searcher.retrieval.web.summarize import SUMMARY_PROMPT, parse_summary
from r1searcher.retrieval.web.search import WebConfig, WebRetriever, chunk_text, cut_tail, html_to_text
from r1searcher.retrieval.web.cache import WebCache

TURING = html_page(
    "Alan Turing - Wikipedia",
    "Alan Mathison Turing was an English mathematician, computer scientist and logician.",
    "Turing was born in Maida Vale, London, while his father was on leave from the Indian Civil Service.",
    "During the Second World War he worked at Bletchley Park on breaking German ciphers.",
    extra="<h2>References</h2><ul><li>Hodges, Andrew (1983). The Enigma referencebook.</li></ul>",
)
ENIGMA = html_page(
    "Enigma machine",
    "The Enigma machine is a cipher device developed in the early twentieth century.",
    "It was used commercially and adopted by the military and government services of several countries.",
)
Q = "Alan Turing birthplace"
HITS = [
    ("Alan Turing - Wikipedia", "/wiki/Alan_Turing", "Alan Turing was an English mathematician."),
    ("Enigma machine - Wikipedia", "/wiki/Enigma", "The Enigma machine is a cipher device."),
    ("Turing archive", "/wiki/Missing", "The Turing archive snippet: born 23 June 1912."),
]


def populate(w: World) -> None:
    w.hits[Q] = list(HITS)
    w.pages["/wiki/Alan_Turing"] = (200, "text/html; charset=utf-8", TURING)
    w.pages["/wiki/Enigma"] = (200, "text/html", ENIGMA)


def make(w: World, **kw) -> WebRetriever:
    opts = dict(provider=w.provider, base_url=w.url, api_key=KEY, backoff_s=0.01, rps=0,
                allow_private_urls=True)  # the fake web is on loopback, which is refused by default
    opts.update(kw)
    return WebRetriever(**opts)


def chat_on(w: World) -> dict:
    return dict(summary_base_url=f"{w.url}/v1", summary_model="tiny-summariser")


# ---------------------------------------------------------------------------------------------- providers
@pytest.mark.parametrize("name", list(PROVIDERS))
def test_each_provider_request_and_reply_shape(world, name):
    world.provider = name
    world.hits["Marie Curie"] = [
        ("Marie Curie &amp; radium", "/a", "Marie Curie was a physicist &amp; chemist."),
        ("Curie (unit)", "https://units.example/curie", "The curie is a unit of radioactivity."),
    ]
    client = SearchClient(name, world.url, KEY if name in KEY_HEADERS else None, rps=0)
    try:
        hits = client.search("Marie Curie", 5)
    finally:
        client.close()
    assert [h.url for h in hits] == [f"{world.url}/a", "https://units.example/curie"]
    assert hits[0].title == "Marie Curie & radium"
    assert hits[0].snippet == "Marie Curie was a physicist & chemist."  # Brave's <strong> and entities removed
    req = world.requests[-1]
    assert req.method == ("POST" if name == "serper" else "GET")
    if name in KEY_HEADERS:
        assert req.headers[KEY_HEADERS[name].lower()] == KEY
    if name == "serper":
        assert req.body["q"] == "Marie Curie" and req.body["num"] == 5
    else:
        assert req.query["q"] == ["Marie Curie"]
    if name == "searxng":
        assert req.query["format"] == ["json"]
    assert world.count() == 1


def test_reply_without_hits_is_empty_and_error_reply_is_an_error():
    bing = get_provider("bing")
    assert bing.parse({"_type": "SearchResponse", "queryContext": {"originalQuery": "zzz"}}, "u") == []
    with pytest.raises(RetrieverError, match="bing.*quota exceeded"):
        bing.parse({"error": {"code": "429", "message": "quota exceeded"}}, "u")
    with pytest.raises(RetrieverError, match="not a JSON object"):
        get_provider("serper").parse(["organic"], "u")
    with pytest.raises(ValueError, match="serper, bing, brave, searxng"):
        get_provider("google")


def test_base_url_may_already_name_the_endpoint():
    assert get_provider("serper").endpoint("http://127.0.0.1:9/search") == "http://127.0.0.1:9/search"
    assert get_provider("brave").endpoint("http://127.0.0.1:9/") == "http://127.0.0.1:9/res/v1/web/search"
    with pytest.raises(RetrieverError, match="R1SEARCHER_WEB_BASE_URL"):
        get_provider("searxng").endpoint(None)


def test_missing_key_is_a_clear_error_before_any_request(world):
    with pytest.raises(RetrieverError) as e:
        WebRetriever(provider="brave", base_url=world.url)
    assert "brave" in str(e.value) and world.url in str(e.value) and "R1SEARCHER_WEB_API_KEY" in str(e.value)
    assert world.count() == 0


def test_rejected_key_is_not_retried(world):
    populate(world)
    with make(world, api_key="wrong", retries=3) as r, pytest.raises(RetrieverError) as e:
        r.search([Q], 3)
    msg = str(e.value)
    assert "serper" in msg and f"{world.url}/search" in msg and "HTTP 403" in msg and "R1SEARCHER_WEB_API_KEY" in msg
    assert world.count("search") == 1


def test_429_then_success_honours_retry_after(world):
    populate(world)
    world.script = lambda route, n, req: _json(429, {"message": "slow down"}, {"Retry-After": "0"}) if route == "search" and n == 0 else None
    with make(world, backoff_s=30.0) as r:  # a 30 s backoff would hang the test: Retry-After: 0 wins
        res = r.search([Q], 3)
    assert world.count("search") == 2
    assert res[0] and res[0][0].id == f"{world.url}/wiki/Alan_Turing"


def test_retry_delay_prefers_retry_after_and_caps_it():
    import email.utils
    import time

    import httpx

    policy = RetryPolicy(backoff_s=30.0, max_backoff_s=40.0, max_retry_after_s=5.0)
    assert policy.delay(0, httpx.Response(429, headers={"Retry-After": "0"})) == 0.0
    assert policy.delay(0, httpx.Response(429, headers={"Retry-After": "3600"})) == 5.0
    date = email.utils.formatdate(time.time() + 3, usegmt=True)
    assert 0.0 < policy.delay(0, httpx.Response(503, headers={"Retry-After": date})) <= 5.0
    assert 15.0 <= policy.delay(0, httpx.Response(503)) <= 30.0  # no header: jittered backoff
    assert policy.delay(3, None) == pytest.approx(40.0, rel=0.5)  # capped at max_backoff_s, then jittered


def test_5xx_until_retries_run_out_names_provider_and_url(world):
    populate(world)
    world.script = lambda route, n, req: _json(503, {"error": "maintenance"}) if route == "search" else None
    with make(world, retries=2) as r, pytest.raises(RetrieverError) as e:
        r.search([Q], 3)
    assert world.count("search") == 3
    assert "failed after 3 attempt(s)" in str(e.value) and "HTTP 503" in str(e.value) and f"{world.url}/search" in str(e.value)


def test_dead_provider_is_a_clear_error(clean_env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with WebRetriever(provider="searxng", base_url=url, retries=1, backoff_s=0.01, rps=0) as r:
        with pytest.raises(RetrieverError) as e:
            r.search(["anything"], 3)
        assert r.stats()["search_requests"] == 2
    assert "searxng" in str(e.value) and f"{url}/search" in str(e.value) and "cannot connect" in str(e.value)


def test_rate_limiter_spaces_request_starts():
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))

    lim = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        lim.wait()
    assert slept == [0.25, 0.5, 0.75]  # the first goes at once, the rest 1/4 s apart
    now[0] = 200.0  # idle for a long time: no debt carried over
    assert lim.wait() == 0.0
    assert RateLimiter(0).wait() == 0.0


# ---------------------------------------------------------------------------------------------- text
def test_html_to_text_keeps_content_drops_boilerplate_and_references():
    text = cut_tail(html_to_text(TURING))
    assert "Maida Vale" in text and "Bletchley Park" in text
    for junk in ("trackingScriptToken", "color: red", "navigationlink", "footerword", "referencebook"):
        assert junk not in text


def test_chunk_text_packs_paragraphs_and_splits_long_ones():
    text = "\n".join(["a " * 30, "b " * 30, "c " * 50, "", "d " * 250])
    chunks = chunk_text(text, 100)
    assert [len(c.split()) for c in chunks] == [60, 50, 100, 100, 50]
    assert chunks[0].startswith("a") and chunks[1].startswith("c") and set(chunks[-1].split()) == {"d"}


def test_parse_summary_rules():
    assert parse_summary("[Exacted Content]: Turing was born in London.") == "Turing was born in London."
    assert parse_summary("**[Exacted Content]**: Turing was born in London.") == "Turing was born in London."
    assert parse_summary("[Exacted Content]: None") is None
    assert parse_summary('[Exacted Content]: "None".') is None
    assert parse_summary("[Exacted Content]: None. The page is about ciphers.") is None
    kept = "[Exacted Content]: None of his papers mention it; nonetheless he lived in London."
    assert parse_summary(kept) == "None of his papers mention it; nonetheless he lived in London."
    assert parse_summary(kept, strict_none=True) is None  # the released code's substring rule
    assert parse_summary("[Exacted Content]: He lived in London.", strict_none=True) == "He lived in London."


# ---------------------------------------------------------------------------------------------- retrieval paths
def test_bm25_passages_from_fetched_pages_with_snippet_fallback(world):
    populate(world)
    with make(world) as r:
        assert isinstance(r, Retriever)
        [res] = r.search([Q], 3)
    assert all(isinstance(p, Passage) for p in res) and len(res) == 3
    best = res[0]
    assert best.id == f"{world.url}/wiki/Alan_Turing" and best.title == "Alan Turing - Wikipedia"
    assert "Maida Vale" in best.text and "trackingScriptToken" not in best.text and best.score > 0
    ids = [p.id for p in res]
    missing = res[ids.index(f"{world.url}/wiki/Missing")]  # 404 page → its search snippet
    assert missing.text == "The Turing archive snippet: born 23 June 1912." and missing.title == "Turing archive"
    assert world.count("page") == 3 and world.count("chat") == 0


def test_summaries_drop_none_and_use_the_paper_prompt(world):
    populate(world)
    world.hits[Q].append(("Cipher history", "/wiki/Cipher", "History of ciphers."))
    world.pages["/wiki/Cipher"] = (200, "text/html", html_page("Cipher", "A cipher is an algorithm for encryption."))
    with make(world, **chat_on(world), pages=4) as r:
        [res] = r.search([Q], 4)
    by_id = {p.id.rsplit("/", 1)[1]: p for p in res}
    assert list(by_id) == ["Alan_Turing", "Missing"]  # Enigma and Cipher: "None" → dropped; rank order kept
    assert by_id["Alan_Turing"].text == "Summary: Alan Turing - Wikipedia"  # the page's first line naming Turing
    assert by_id["Missing"].text == "The Turing archive snippet: born 23 June 1912."  # snippet, not summarised
    assert [p.score for p in res] == [1.0, 1 / 3]
    chats = [q for q in world.requests if q.path == "/v1/chat/completions"]
    assert len(chats) == 3 and {c.body["model"] for c in chats} == {"tiny-summariser"}
    prompt = next(c.body["messages"][0]["content"] for c in chats if "Mathison" in c.body["messages"][0]["content"])
    head, _, tail = SUMMARY_PROMPT.partition("{search_query}")
    assert prompt.startswith(head + Q + "\n\n[Webpage Content]\n") and prompt.endswith("\n\n## Output:\n")
    assert "Maida Vale" in prompt and "trackingScriptToken" not in prompt and "referencebook" not in prompt
    assert all(c.body["max_tokens"] == 2048 and c.body["temperature"] == 0.0 for c in chats)


def test_summary_first_only_stops_at_the_first_useful_page(world):
    populate(world)
    world.hits[Q] = [HITS[1], HITS[0], HITS[2]]  # Enigma (→ None) first, then Turing
    with make(world, **chat_on(world), summary_first_only=True) as r:
        [res] = r.search([Q], 3)
    assert len(res) == 1 and res[0].id.endswith("/wiki/Alan_Turing") and res[0].score == 0.5
    assert world.count("chat") == 2  # Enigma, then Turing; the third page is never summarised


def test_summariser_failure_is_a_retriever_error(world):
    populate(world)
    world.script = lambda route, n, req: _json(500, {"error": "model crashed"}) if route == "chat" else None
    with make(world, **chat_on(world), retries=1) as r, pytest.raises(RetrieverError) as e:
        r.search([Q], 3)
    assert "summariser" in str(e.value) and "tiny-summariser" in str(e.value) and "HTTP 500" in str(e.value)


def test_pages_are_fetched_concurrently(world):
    populate(world)
    world.pages["/wiki/Missing"] = (200, "text/plain; charset=utf-8", "Turing archive: plain text page.".encode())
    world.page_barrier = threading.Barrier(3, timeout=10)  # a sequential fetcher would break it → 500s
    with make(world, page_retries=0) as r:
        [res] = r.search([Q], 3)
    assert world.max_inflight >= 3
    assert {p.id.rsplit("/", 1)[1] for p in res} == {"Alan_Turing", "Enigma", "Missing"}
    assert any(p.text == "Turing archive: plain text page." for p in res)


def _big_page(world: World) -> None:
    filler = "".join(f"<p>Filler paragraph number {i} about Turing and nothing else of note.</p>" for i in range(6000))
    big = f"<html><body><p>Opening paragraph about Turing.</p>{filler}<p>Latemarker Turing.</p></body></html>".encode()
    assert len(big) > 400_000
    for q in ("turing", "latemarker"):
        world.hits[q] = [("Big page", "/big", "big snippet")]
    world.pages["/big"] = (200, "text/html", big)


def test_byte_cap(world):
    _big_page(world)
    with make(world, max_page_chars=10**7, pages=1, use_cache=False) as r:
        [[whole]] = r.search(["latemarker"], 1)  # control: uncapped, the late paragraph is found
        assert "Latemarker" in whole.text and whole.score > 0
    with make(world, max_page_bytes=64 << 10, max_page_chars=10**7, pages=1, use_cache=False) as r:
        [[capped]] = r.search(["latemarker"], 1)
    assert "Latemarker" not in capped.text and capped.score == 0.0  # no chunk matches: the page's lead
    assert capped.text.startswith("Opening paragraph about Turing.")


def test_length_budget_bounds_what_the_summariser_reads(world):
    _big_page(world)
    with make(world, **chat_on(world), max_page_chars=3000, pages=1) as r:
        [res] = r.search(["turing"], 1)
    doc = world.requests[-1].body["messages"][0]["content"].split("[Webpage Content]\n")[1].rsplit("\n\n## Output:", 1)[0]
    assert doc.startswith("Opening paragraph about Turing.")
    assert 2800 <= len(doc) <= 3000 and "Latemarker" not in doc
    assert res[0].text.startswith("Summary: Opening paragraph")


def test_unsupported_content_and_server_errors_fall_back_to_snippets(world):
    world.hits["q"] = [("PDF", "/doc.pdf", "pdf snippet"), ("Flaky", "/flaky", "flaky snippet"), ("Empty", "/empty", "")]
    world.pages["/doc.pdf"] = (200, "application/pdf", b"%PDF-1.4 ...")
    world.pages["/flaky"] = (502, "text/html", b"bad gateway")
    world.pages["/empty"] = (200, "text/html", b"<html><body><script>x()</script></body></html>")
    with make(world, page_retries=1) as r:
        [res] = r.search(["q"], 3)
    assert [p.text for p in res] == ["pdf snippet", "flaky snippet"]  # no page text and no snippet → nothing
    assert sum(1 for q in world.requests if q.path == "/flaky") == 2  # 5xx retried once
    assert sum(1 for q in world.requests if q.path == "/doc.pdf") == 1  # permanent: not retried


def test_batch_runs_each_distinct_query_once_and_keeps_order(world):
    populate(world)
    world.hits["Enigma machine"] = [HITS[1]]
    with make(world) as r:
        res = r.search([Q, "Enigma machine", Q, "nothing at all"], 2)
    assert len(res) == 4 and res[0] == res[2] and res[3] == []
    assert res[1][0].id.endswith("/wiki/Enigma")
    assert world.count("search") == 3
    assert sum(1 for q in world.requests if q.path == "/wiki/Enigma") == 1  # shared URL fetched once


# ---------------------------------------------------------------------------------------------- cache
@pytest.mark.parametrize("summarise", [False, True])
def test_second_run_makes_no_http_request_even_from_a_new_instance(world, summarise):
    populate(world)
    opts = chat_on(world) if summarise else {}
    with make(world, **opts) as r:
        first = r.search([Q], 3)
    sent = world.count()
    assert sent >= 4
    with make(world, **opts) as r2:  # a new instance: only the file on disk is shared
        second = r2.search([Q], 3)
        assert r2.stats()["search_requests"] == r2.stats()["page_requests"] == r2.stats()["summary_requests"] == 0
    assert world.count() == sent
    assert second == first


def test_transient_page_failures_are_cached_briefly(world):
    world.hits["q"] = [("Flaky", "/flaky", "flaky snippet")]
    world.pages["/flaky"] = (503, "text/html", b"down")
    with make(world, page_retries=0, failure_ttl_s=3600) as r:
        r.search(["q"], 1)
    with make(world, page_retries=0, failure_ttl_s=0) as r:  # TTL over: the page is tried again
        r.search(["q"], 1)
    assert sum(1 for q in world.requests if q.path == "/flaky") == 2
    with make(world, page_retries=0, failure_ttl_s=3600) as r:
        r.search(["q"], 1)
    assert sum(1 for q in world.requests if q.path == "/flaky") == 2


def _writer(path: str, worker: int, n: int) -> None:
    with WebCache(path) as c:
        for i in range(n):
            c.put("page", f"{worker}-{i}", {"text": f"page {i} of worker {worker}"})


def test_cache_is_shared_by_concurrent_processes(tmp_path):
    path = str(tmp_path / "web.sqlite")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 150)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with WebCache(path) as c:
        assert c.count("page") == 450
        assert c.get("page", "2-149") == {"text": "page 149 of worker 2"}
        assert c._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---------------------------------------------------------------------------------------------- configuration
def test_configuration_from_environment_and_arguments(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("R1SEARCHER_WEB_PROVIDER", "bing")
    monkeypatch.setenv("R1SEARCHER_WEB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("R1SEARCHER_WEB_API_KEY", "k")
    monkeypatch.setenv("R1SEARCHER_WEB_RPS", "2.5")
    monkeypatch.setenv("R1SEARCHER_WEB_QUERY_SUFFIX", " site:en.wikipedia.org")
    cfg = WebConfig.from_env()
    assert (cfg.provider, cfg.base_url, cfg.api_key, cfg.rps, cfg.query_suffix) == (
        "bing", "http://127.0.0.1:9", "k", 2.5, " site:en.wikipedia.org")
    assert cfg.cache_dir == str(tmp_path / "cache") and not cfg.summarizer_on
    assert WebConfig.from_env(provider="brave").provider == "brave"  # arguments win
    monkeypatch.setenv("R1SEARCHER_SUMMARY_MODEL", "m")
    assert WebConfig.from_env().summarizer_on and not WebConfig.from_env(summarize=False).summarizer_on
    monkeypatch.setenv("R1SEARCHER_WEB_RPS", "fast")
    with pytest.raises(ValueError, match="R1SEARCHER_WEB_RPS"):
        WebConfig.from_env()
    with pytest.raises(ValueError, match="unknown web search provider"):
        WebConfig(provider="altavista")
    with pytest.raises(TypeError, match="colour"):
        WebConfig.from_env(colour="red")


def test_query_suffix_reaches_the_provider(world):
    world.provider = "searxng"
    world.hits["Turing site:en.wikipedia.org"] = [HITS[0]]
    world.pages["/wiki/Alan_Turing"] = (200, "text/html", TURING)
    with make(world, query_suffix=" site:en.wikipedia.org", api_key=None) as r:
        [res] = r.search(["Turing"], 1)
    assert world.requests[0].query["q"] == ["Turing site:en.wikipedia.org"]
    assert res[0].id.endswith("/wiki/Alan_Turing")


def test_declared_charset_and_empty_queries(world):
    world.hits["cafe"] = [("Café", "/latin", "snippet")]
    world.pages["/latin"] = (200, "text/html; charset=iso-8859-1",
                             "<html><body><p>Un café au lait est une boisson chaude.</p></body></html>".encode("latin-1"))
    with make(world) as r:
        res = r.search(["cafe", "   "], 1)
    assert res[0][0].text == "Un café au lait est une boisson chaude." and res[1] == []
    assert world.count("search") == 1  # the blank query never reaches the provider


# ---------------------------------------------------------------------------------------------- safety
def test_loopback_pages_are_not_fetched_unless_allowed(world):
    """A search result pointing at this machine (an SSRF risk on the open web) is not fetched by
    default: its snippet stands in. Nothing is cached, so allowing it later fetches the pages."""
    populate(world)
    with make(world, allow_private_urls=False) as r:
        [res] = r.search([Q], 3)
        page = r.pages.fetch(f"{world.url}/wiki/Alan_Turing")
    assert world.count("page") == 0 and world.count("search") == 1
    assert sorted(p.text for p in res) == sorted(h[2] for h in HITS)  # the three snippets stand in
    assert "127.0.0.1 is a loopback address" in page.error and "R1SEARCHER_WEB_ALLOW_PRIVATE_URLS=1" in page.error
    with make(world) as r:  # allowed (the test default): the same pages are fetched now
        [res] = r.search([Q], 3)
    assert world.count("page") == 3 and "Maida Vale" in res[0].text


def test_names_and_spellings_of_loopback_are_refused_too(world):
    """``localhost``, and 2130706433 (127.0.0.1 as one number: found by resolving the name on the
    request, not by parsing it) are refused; no request reaches the server."""
    port = world.url.rsplit(":", 1)[1]
    world.pages["/p"] = (200, "text/html", TURING)
    with make(world, allow_private_urls=False) as r:
        for url in (f"http://localhost:{port}/p", f"http://2130706433:{port}/p", f"http://[::ffff:127.0.0.1]:{port}/p"):
            page = r.pages.fetch(url)
            assert page.error and page.error.startswith("not fetched: ") and "loopback" in page.error, (url, page)
    assert world.count("page") == 0


def test_connect_time_guard_refuses_what_a_name_resolves_to():
    """The connection itself goes only to a vetted public address (a DNS answer that changes after
    the request check cannot reach loopback)."""
    import httpcore

    from r1searcher.retrieval.web.urlguard import BLOCKED_MARK, PublicOnlyBackend

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        backend = PublicOnlyBackend(httpcore.SyncBackend())
        for host in ("localhost", "127.0.0.1", "2130706433"):
            with pytest.raises(httpcore.ConnectError, match=f"^{BLOCKED_MARK}{host} resolves to 127.0.0.1, a loopback"):
                backend.connect_tcp(host, port, timeout=5)


@pytest.mark.parametrize("host,problem", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("[::ffff:127.0.0.1]", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "not a public address"), ("localhost", "loopback"), ("app.localhost", "loopback"),
    ("8.8.8.8", None), ("2001:4860:4860::8888", None), ("en.wikipedia.org", None),
])
def test_which_hosts_are_refused(host, problem):
    from r1searcher.retrieval.web.urlguard import BlockedURL, check_host

    if problem is None:
        check_host(host, resolve=False)
    else:
        with pytest.raises(BlockedURL, match=problem):
            check_host(host, resolve=False)


def test_allow_private_urls_from_the_environment(clean_env, monkeypatch):
    assert WebConfig.from_env().allow_private_urls is False  # the default: refuse
    for raw, want in (("1", True), ("yes", True), ("0", False), ("off", False)):
        monkeypatch.setenv("R1SEARCHER_WEB_ALLOW_PRIVATE_URLS", raw)
        assert WebConfig.from_env().allow_private_urls is want
    monkeypatch.setenv("R1SEARCHER_WEB_ALLOW_PRIVATE_URLS", "maybe")
    with pytest.raises(ValueError, match="R1SEARCHER_WEB_ALLOW_PRIVATE_URLS"):
        WebConfig.from_env()


def test_credentials_in_urls_and_keys_never_show(world):
    """user:password in the base URLs and the API key are used but shown nowhere: describe()
    (what /health and serve's log print), repr of the config, error messages."""
    populate(world)
    world.provider = "searxng"
    secret_url = world.url.replace("http://", "http://alice:s3cret-pw@")
    with make(world, base_url=secret_url, api_key="key-0123456789", summary_base_url=f"{secret_url}/v1",
               summary_model="tiny-summariser", summary_api_key="sum-key-987654") as r:
        [res] = r.search([Q], 1)
        shown = repr(r.describe()) + repr(r.cfg) + repr(r.cfg.shown())
    assert res and res[0].id.endswith("/wiki/Alan_Turing")
    search = next(q for q in world.requests if q.path == "/search")
    assert search.headers["authorization"] == "Basic " + __import__("base64").b64encode(b"alice:s3cret-pw").decode()
    for secret in ("s3cret-pw", "key-0123456789", "sum-key-987654"):
        assert secret not in shown
    world.script = lambda route, n, req: _json(500, {"error": "boom at " + secret_url}) if route == "search" else None
    with make(world, base_url=secret_url, retries=0, use_cache=False) as r, pytest.raises(RetrieverError) as e:
        r.search(["another query"], 1)
    assert "s3cret-pw" not in str(e.value) and "alice" not in str(e.value) and "HTTP 500" in str(e.value)


def test_credentials_in_summariser_errors_never_show(world):
    populate(world)
    world.script = lambda route, n, req: _json(500, {"error": "model crashed"}) if route == "chat" else None
    secret_url = world.url.replace("http://", "http://bob:hunter2-pw@")
    with make(world, summary_base_url=f"{secret_url}/v1", summary_model="tiny-summariser", retries=0) as r:
        assert "hunter2-pw" not in repr(r.describe())
        with pytest.raises(RetrieverError) as e:
            r.search([Q], 3)
    assert "hunter2-pw" not in str(e.value) and "summariser" in str(e.value)
