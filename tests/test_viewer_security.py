"""The viewer over hostile or damaged files: every field escaped, the embedded data unbreakable, damage reported.

A ``samples.jsonl`` or ``predictions.jsonl`` is a file on disk that anyone (or any tool) may have
written. Here every field the page shows carries markup (``<!--<script>``, ``</script>``, event-handler
attributes, U+2028), numbers are strings of markup, and lines are damaged; the page, in a real headless
Chromium, must open no dialog, render every row, and show the text literally. Without Chromium the
browser tests skip and say so (see test_viewer_browser.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from r1searcher.rollout import tags
from r1searcher.viewer.page import render_html, write_viewer
from r1searcher.viewer.records import doc_spans, load_rows
from test_viewer import embedded, write_demo_like

PAYLOADS = ["<!--<script>", "</script><script>alert('script')</script>", "<img src=x onerror=alert('img')>",
            '"><svg onload=alert("svg")>', "'><img src=x onerror=alert('quote')>", "\u2028\u2029", "&lt;&amp;"]
EVIL = " ".join(PAYLOADS)
NAME = " ".join(p for p in PAYLOADS if "/" not in p)  # a folder name cannot hold "/"


def evil_text(tag: str) -> str:
    """A response with every segment (reasoning, query, passage title and text, answer) full of markup."""
    return (f" {tag} reasoning {EVIL} {tags.QUERY_OPEN}{tag} query {EVIL}{tags.QUERY_CLOSE}\n\n{tags.DOCS_OPEN}\n"
            f"(1) Title: {tag} title {EVIL}\n{tag} passage {EVIL}\n{tags.DOCS_CLOSE}\n\n"
            f"{EVIL}{tags.THINK_CLOSE}\n\n{tags.ANSWER_OPEN} {tag} answer {EVIL} {tags.ANSWER_CLOSE}")


def write_evil_runs(root: Path) -> Path:
    """``root/NAME/``: a training run and two eval runs whose names, fields and numbers all carry markup."""
    top = root / NAME
    train = top / f"train {NAME}"
    train.mkdir(parents=True)
    (train / "config.yaml").write_text(yaml.safe_dump({"data": {"path": f"data/train {NAME}.jsonl"}}))
    text = evil_text("t1")
    good = {"step": 1, "reward": 0.5, "question": f"t1 {EVIL}", "text": text, "stop_reason": f"stop {EVIL}",
            "n_searches": 1, "answers": [f"gold {EVIL}", "second"], "pred": f"pred {EVIL}", "em": 1.0,
            "cover_em": 1.0, "f1": 1.0, "reward_parts": {f"part {EVIL}": 0.5, "format": f"fmt {EVIL}"},
            "reward_reasons": [f"why {EVIL}"], "untrained": doc_spans(text)}
    numbers = {**good, "question": f"t2 {EVIL}", "text": evil_text("t2"), "step": f"<b>{EVIL}</b>",
               "n_searches": "<img src=x onerror=alert('ns')>", "reward": EVIL, "f1": [EVIL], "em": True,
               "cover_em": "1", "untrained": EVIL}
    shapes = {**good, "question": {"q": f"t3 {EVIL}"}, "text": evil_text("t3"), "answers": {"a": EVIL},
              "pred": [EVIL], "reward_parts": EVIL, "step": 2.5, "n_searches": -1}
    lines = [json.dumps(good), json.dumps(numbers), json.dumps(shapes),
             json.dumps({**good, "question": f"t4 {EVIL}", "text": evil_text("t4"), "untrained": None, "step": 3}).replace('"reward": 0.5', '"reward": NaN')]
    (train / "samples.jsonl").write_text("\n".join(lines) + "\n")
    for run, tag in ((f"A {NAME}", "a"), (f"B {NAME}", "b")):
        d = top / run
        d.mkdir()
        rows = [{"id": f"id{i} {EVIL}", "question": f"e{i} {EVIL}", "answers": [f"gold {EVIL}"],
                 "pred_ans": f"{tag} pred {EVIL}" if i else EVIL, "stop_reason_final": f"end {EVIL}",
                 "gen_text_store": evil_text(f"{tag}{i}"), "n_searches": 1 if i else f"<b>{EVIL}</b>",
                 "em": 0.0, "cover_em": float(i % 2), "f1": 0.5} for i in range(3)]
        (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "metrics.json").write_text(json.dumps({"method": f"method {EVIL}", "dataset": f"data/eval {NAME}.jsonl"}))
    return top


# --------------------------------------------------------------------------- without a browser


def test_embedded_json_cannot_end_or_confuse_its_script_element(tmp_path):
    rows = [{"q": EVIL, "text": evil_text("x"), "st": 1}]
    page = render_html([{"label": NAME, "kind": "train", "method": EVIL, "datasets": [], "n": 1, "issues": [EVIL]}],
                       rows, EVIL, compress=False)
    body = re.search(r'<script id="data" type="application/json" data-encoding="json">(.*?)</script>', page, re.S).group(1)
    for c in "<>&\u2028\u2029":  # the parser's script-data states start at "<"; U+2028/9 end lines in old JS
        assert c not in body, f"{c!r} written raw into the embedded JSON"
    data = json.loads(body)
    assert data["rows"] == rows and data["meta"]["title"] == EVIL and data["meta"]["runs"][0]["issues"] == [EVIL]
    assert page.count("</script>") == 2 and "<!--" not in page
    assert EVIL not in page.split("<script", 1)[0]  # the title is escaped in <title> and <h1>


def test_numbers_and_types_are_checked_when_read(tmp_path):
    runs, rows = load_rows([write_evil_runs(tmp_path)])
    train = {r["text"][1:3]: r for r in rows if runs[r["s"]]["kind"] == "train"}
    good, num, shape, nan = train["t1"], train["t2"], train["t3"], train["t4"]
    assert "bad" not in good and (good["st"], good["ns"], good["r"], good["mask"]) == (1, 1, 0.5, "recorded")
    assert (num["st"], num["ns"], num["r"], num["f1"], num["em"]) == (None, None, None, None, None)
    assert num["cem"] == 1.0 and num["ok"] is True  # "1" is the number 1
    assert set(num["bad"]) == {"step", "n_searches", "reward", "f1", "em", "untrained"}
    assert num["bad"]["n_searches"] == "<img src=x onerror=alert('ns')>"
    assert num["mask"] == "tags" and num["um"] == doc_spans(num["text"])  # bad recorded spans: the tags decide
    assert (shape["st"], shape["ns"], shape["parts"]) == (None, None, {"why": f"why {EVIL}"})
    assert shape["q"] == json.dumps({"q": f"t3 {EVIL}"}, ensure_ascii=False) and isinstance(shape["pred"], str)
    assert set(shape["bad"]) == {"question", "answers", "pred", "reward_parts", "step", "n_searches"}
    assert nan["r"] is None and nan["bad"] == {"reward": "NaN"} and nan["st"] == 3
    issues = runs[[r["kind"] for r in runs].index("train")]["issues"]
    assert len(issues) == 1 and "bad values left out" in issues[0] and "n_searches on lines 2, 3" in issues[0]
    assert "reward on lines 2, 4" in issues[0]
    ev = [r for r in rows if runs[r["s"]]["kind"] == "eval"]
    assert len(ev) == 6 and all(isinstance(r["ns"], int) or r["ns"] is None for r in ev)
    assert sum("n_searches" in r.get("bad", {}) for r in ev) == 2
    page = write_viewer([tmp_path / NAME], tmp_path / "v.html", compress=False)
    json.loads(re.search(r'data-encoding="json">(.*?)</script>', page.read_text(), re.S).group(1),
               parse_constant=lambda c: pytest.fail(f"{c} in the page's JSON: JSON.parse rejects it"))


def test_damaged_lines_are_skipped_and_reported(tmp_path, capsys):
    from r1searcher.cli import main

    demo = write_demo_like(tmp_path / "demo", steps=5, per_step=4, eval_questions=19)
    preds = demo / "after" / "rl" / "predictions.jsonl"
    lines = preds.read_text().splitlines(keepends=True)
    n = len(lines)
    lines[4] = lines[4][: len(lines[4]) // 2] + "\n"  # a torn line in the middle
    lines.insert(10, "[1, 2]\n")  # JSON, but not a record
    lines.insert(12, "\n")  # blank lines are not damage
    preds.write_bytes("".join(lines).encode() + b'{"question": "\xff"}\n{"id": "q-last"')  # bad UTF-8; torn last line
    runs, rows = load_rows([demo])
    rl = next(r for r in runs if r["label"].endswith("after/rl"))
    assert rl["n"] == n - 1 and sum(runs[r["s"]] is rl for r in rows) == n - 1  # before and after the damage
    assert rl["issues"] == [f"{preds}: 4 damaged lines skipped (lines 5, 11, {n + 3}, {n + 4})"]
    from r1searcher.viewer.records import read_jsonl

    records, damaged = read_jsonl(preds)
    assert len(records) == n - 1 and damaged == [5, 11, n + 3, n + 4]
    assert all(not r["issues"] for r in runs if r is not rl)
    assert main(["view", str(demo), "--out", str(tmp_path / "v.html")]) == 0
    err = capsys.readouterr().err
    assert f"r1searcher view: warning: {preds}: 4 damaged lines skipped" in err
    assert embedded(tmp_path / "v.html")["meta"]["runs"] == runs


# --------------------------------------------------------------------------- in headless Chromium


@pytest.fixture(scope="module")
def browser():
    from test_viewer_browser import Browser, chromium_binary

    chromium_binary()
    b = Browser()
    yield b
    b.close()


ROW_CELLS = """[...document.querySelectorAll('#main .row')].map((e) => [+e.dataset.i, e.children[7].textContent,
  e.children[7].title, e.children[8].textContent, e.children[0].textContent])"""
INJECTED = "document.querySelectorAll('img, svg, iframe, object, embed').length + document.scripts.length"


@pytest.mark.parametrize("compress", [False, True], ids=["json", "gzip"])
def test_markup_in_every_field_is_shown_as_text(browser, tmp_path, compress):
    top = write_evil_runs(tmp_path)
    page = write_viewer([top], tmp_path / "viewer.html", title=f"title {EVIL}", compress=compress)
    data = embedded(page)
    rows, runs = data["rows"], data["meta"]["runs"]
    browser.dialogs.clear()
    browser.open(page, timeout=30)
    assert browser.dialogs == []
    assert browser.js(INJECTED) == 2  # the page's own two scripts, nothing the data made
    assert browser.count() == len(rows) == 4 + 3 + 3
    assert browser.js("document.title") == f"title {EVIL}" and browser.js("document.querySelector('h1').textContent") == f"title {EVIL}"

    cells = browser.js(ROW_CELLS)  # every row, its question and prediction literal
    assert sorted(i for i, *_ in cells) == list(range(len(rows)))
    for i, q, title, pred, source in cells:
        r = rows[i]
        assert q == title == r["q"] and pred == (r["pred"] or "")
        assert source == f"{runs[r['s']]['label']} · {r['ds']}" and NAME in source
    issues = browser.js("document.getElementById('issues').textContent")
    assert "bad values left out" in issues and "n_searches on lines 2, 3" in issues
    labels = browser.js("[...document.querySelectorAll('button.chip[data-facet=\"run\"]')].map((b) => b.firstChild.textContent)")
    assert sorted(labels) == sorted(r["label"] + (f" ({r['method']})" if r["kind"] == "eval" else "") for r in runs)

    for i in range(len(rows)):  # open every trajectory with a real click
        browser.click("", where=f"document.querySelector('.row[data-i=\"{i}\"]')")
    details = browser.js("[...document.querySelectorAll('.detail')].map((d) => [d.textContent, d.querySelector('pre.resp').textContent])")
    assert len(details) == len(rows)
    order = [i for i, *_ in cells]
    for i, (shown, resp) in zip(order, details):
        r, run = rows[i], runs[rows[i]["s"]]
        assert resp == r["text"]  # the response, markup and U+2028 included, as written
        for field in (r["q"], " | ".join(r["gold"]), r["pred"] or "(no answer)", r["stop"], run["label"], r["ds"]):
            assert field in shown
        for k, v in r["parts"].items():
            assert k in shown and (str(v) if isinstance(v, str) else "") in shown
        for k, v in r.get("bad", {}).items():
            assert f"{k}: {v}" in shown
        if run["kind"] == "eval":
            assert f"id {r['id']}" in shown and f"({run['method']})" in shown
    assert "step 1" in details[order.index(next(i for i, r in enumerate(rows) if r["q"].startswith("t1")))][0]
    assert browser.js(INJECTED) == 2

    # a chip whose value is markup still filters; the text box takes markup too
    stop = next(r["stop"] for r in rows if runs[r["s"]]["kind"] == "train")
    browser.click("", where=f"[...document.querySelectorAll('button.chip[data-facet=\"stop\"]')].find((b) => b.dataset.v === {json.dumps(stop)})")
    assert browser.count() == sum(r["stop"] == stop for r in rows) == 4
    browser.click("", where=f"[...document.querySelectorAll('button.chip[data-facet=\"stop\"]')].find((b) => b.dataset.v === {json.dumps(stop)})")
    browser.type("#f-text", "t2 <!--<script>")
    assert browser.count() == 1 and browser.js("document.getElementById('f-text').value") == "t2 <!--<script>"
    browser.clear("#f-text")

    # side by side: the two eval runs, every pair literal
    browser.click('button[data-tab="compare"]')
    assert browser.count() == 3
    browser.click(".cmpgrid.row")
    assert browser.js("document.querySelectorAll('.cols .detail').length") == 2
    heads = browser.js("[...document.querySelectorAll('.cols h3')].map((h) => h.textContent)")
    assert heads == [f"A: {NAME}/A {NAME}", f"B: {NAME}/B {NAME}"]
    assert browser.dialogs == [] and browser.js(INJECTED) == 2


@pytest.mark.parametrize("compress", [False, True], ids=["json", "gzip"])
def test_reported_pages_open_no_dialog_and_render(browser, tmp_path, compress):
    """The two pages from the report: markup as n_searches / step (alerts on load), "<!--<script>" in a question (stuck)."""
    demo = write_demo_like(tmp_path / "demo", steps=3, per_step=4, eval_questions=6)
    for f, key, value in ((demo / "after" / "rl" / "predictions.jsonl", "n_searches", "<img src=x onerror=alert(1)>"),
                          (demo / "stage1" / "samples.jsonl", "step", "<img src=x onerror=alert(2)>")):
        recs = [json.loads(line) for line in f.read_text().splitlines()]
        recs[0][key] = value
        recs[1]["question"] = "Is <!--<script> a comment? " + recs[1]["question"]
        f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    page = write_viewer([demo], tmp_path / "viewer.html", compress=compress)
    rows = embedded(page)["rows"]
    browser.dialogs.clear()
    browser.open(page, timeout=30)
    n_eval = len((demo / "after" / "rl" / "predictions.jsonl").read_text().splitlines())
    assert browser.count() == len(rows) == 12 + 2 * n_eval
    assert browser.dialogs == [] and browser.js(INJECTED) == 2
    shown = browser.js("document.getElementById('main').textContent")
    assert shown.count("Is <!--<script> a comment?") == 2
    bad = [i for i, r in enumerate(rows) if r.get("bad")]
    assert len(bad) == 2 and all(rows[i]["ns"] is None or rows[i]["st"] is None for i in bad)
    for i in bad:
        browser.click("", where=f"document.querySelector('.row[data-i=\"{i}\"]')")
    text = browser.js("[...document.querySelectorAll('.detail .bad-values')].map((e) => e.textContent).join(' / ')")
    assert "n_searches: <img src=x onerror=alert(1)>" in text and "step: <img src=x onerror=alert(2)>" in text
    assert browser.dialogs == [] and browser.js(INJECTED) == 2


def test_damaged_lines_are_shown_with_every_valid_row(browser, tmp_path):
    demo = write_demo_like(tmp_path / "demo", steps=5, per_step=4, eval_questions=19)
    preds = demo / "after" / "rl" / "predictions.jsonl"
    lines = preds.read_text().splitlines(keepends=True)
    n_eval = len(lines)
    lines[4] = lines[4][:40] + "\n"
    preds.write_text("".join(lines))
    samples = demo / "stage1" / "samples.jsonl"
    slines = samples.read_text().splitlines(keepends=True)
    slines.insert(7, "{not json}\n")
    samples.write_text("".join(slines))
    page = write_viewer([demo], tmp_path / "viewer.html")
    browser.open(page, timeout=30)
    total = 20 + n_eval + n_eval - 1
    assert browser.count() == total == len(embedded(page)["rows"])
    warnings = browser.js("[...document.querySelectorAll('#issues .warn')].map((w) => w.textContent)")
    assert sorted(warnings) == sorted([f"⚠ {samples}: 1 damaged line skipped (line 8)",
                                       f"⚠ {preds}: 1 damaged line skipped (line 5)"])
    browser.click(f'button.chip[data-facet="run"][data-v="{[r["label"] for r in embedded(page)["meta"]["runs"]].index("demo/after/rl")}"]')
    assert browser.count() == n_eval - 1  # the rows before and after the damage
    browser.click(f'button.chip[data-facet="run"][data-v="{[r["label"] for r in embedded(page)["meta"]["runs"]].index("demo/after/rl")}"]')
    assert browser.dialogs == []
