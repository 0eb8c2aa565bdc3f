"""``r1searcher data get`` / ``data list`` against loopback servers: a fake Hugging Face hub (the
part of its HTTP API huggingface_hub's hf_hub_download and get_paths_info use) and a plain file
server standing in for raw.githubusercontent.com and dl.fbaipublicfiles.com. Small files in the
published layouts; nothing here needs the internet."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import socket
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from r1searcher.cli import main
from r1searcher.data.sources import registry
from tests.test_retrieval_server import free_port
from tests.test_trainer_loop import PASSAGES, QUESTIONS

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = registry.FLASHRAG_REPO


class FakeServer:
    """One loopback HTTP server: plain files by path, and hub files under ``/datasets/{repo}/resolve/``
    plus ``POST /api/datasets/{repo}/paths-info/{rev}``. Every request is logged; ``drop[path] = (n, times)``
    cuts the body after ``n`` bytes for the next ``times`` GETs of ``path``."""

    def __init__(self):
        self.files: dict[str, bytes] = {}  # plain: URL path -> bytes
        self.hub: dict[str, dict] = {}  # hub: file path in REPO -> {"data", "lfs", "published"}
        self.log: list[tuple[str, str, str | None]] = []
        self.drop: dict[str, tuple[int, int]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _record(self):
                outer.log.append((self.command, urllib.parse.unquote(self.path), self.headers.get("Range")))

            def _hub_path(self) -> str | None:
                prefix = f"/datasets/{REPO}/resolve/"
                p = urllib.parse.unquote(self.path)
                if not p.startswith(prefix):
                    return None
                return p[len(prefix):].split("/", 1)[1]  # drop the revision

            def _send_body(self, data: bytes, key: str, etag: str, extra: dict, head: bool):
                start, status = 0, 200
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and (not if_range or if_range == etag):
                    start = int(rng.split("=", 1)[1].split("-", 1)[0])
                    status = 206
                body = data[start:]
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return
                n, times = outer.drop.get(key, (0, 0))
                if times > 0:
                    outer.drop[key] = (n, times - 1)
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _serve(self, head: bool):
                self._record()
                hp = self._hub_path()
                if hp is not None:
                    f = outer.hub.get(hp)
                    if f is None:
                        self.send_response(404)
                        self.send_header("X-Repo-Commit", COMMIT)
                        self.send_header("X-Error-Code", "EntryNotFound")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    extra = {"X-Repo-Commit": COMMIT}
                    etag = f'"{_blob_id(f["data"])}"'
                    if f["lfs"]:
                        extra["X-Linked-Etag"] = f'"{f["published"]}"'
                        extra["X-Linked-Size"] = str(len(f["data"]))
                    return self._send_body(f["data"], hp, etag, extra, head)
                p = urllib.parse.unquote(self.path)
                if p not in outer.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = outer.files[p]
                self._send_body(data, p, f'"{hashlib.md5(data).hexdigest()}"', {}, head)

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def do_POST(self):
                self._record()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                paths = urllib.parse.parse_qs(body).get("paths", [])
                out = []
                for p in paths:
                    f = outer.hub.get(p)
                    if f is None:
                        continue
                    row = {"type": "file", "path": p, "size": len(f["data"]), "oid": _blob_id(f["data"])}
                    if f["lfs"]:
                        row["lfs"] = {"oid": f["published"], "size": len(f["data"]), "pointerSize": 134}
                    out.append(row)
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def put_hub(self, path: str, data: bytes, lfs: bool = True, published: str | None = None) -> None:
        self.hub[path] = {"data": data, "lfs": lfs, "published": published or hashlib.sha256(data).hexdigest()}

    def put_url(self, url: str, data: bytes) -> None:
        self.files["/" + url.split("://", 1)[1]] = data

    def gets(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.log if r[0] == "GET"]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def r1_file(n: int = len(QUESTIONS)) -> bytes:
    """Questions in the R1-Searcher eval-set layout (idx, question, answer, gen_text_store)."""
    return _jsonl([{"idx": i + 1, "question": QUESTIONS[i % 6][0], "answer": QUESTIONS[i % 6][1], "gen_text_store": ""}
                   for i in range(n)])


def flashrag_file(n: int = 60) -> bytes:
    """A FlashRAG QA file (id, question, golden_answers, metadata), big enough to cut in the middle."""
    rows = [{"id": f"dev_{i}", "question": f"{QUESTIONS[i % 6][0]} ({i})", "golden_answers": [QUESTIONS[i % 6][1]],
             "metadata": {"type": "bridge", "supporting_facts": {"title": [PASSAGES[i % 6][0]]}}} for i in range(n)]
    return _jsonl(rows)


def wiki18_zip() -> bytes:
    """wiki18_100w.zip: one member wiki18_100w.jsonl of {"id", "contents": '"Title"\\ntext'}."""
    lines = _jsonl([{"id": str(i + 1), "contents": f'"{t}"\n{x}'} for i, (t, x) in enumerate(PASSAGES)])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("wiki18_100w.jsonl", lines)
    return buf.getvalue()


def pin(monkeypatch, name: str, data: bytes) -> None:
    """Pin a registry entry's sha256/size to the test's small file (the real ones are the paper's)."""
    e = registry.REGISTRY[name]
    src = dataclasses.replace(e.source, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(e, source=src))


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


@pytest.fixture
def env(tmp_path, monkeypatch, server) -> Path:
    """Data root in tmp, hub and plain downloads pointed at the loopback server, a fresh hub cache."""
    import huggingface_hub.constants as hc

    root = tmp_path / "data"
    monkeypatch.setenv("R1SEARCHER_DATA", str(root))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("R1SEARCHER_DATA_MIRROR", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    return root


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def test_get_hub_file_converts_and_a_second_get_downloads_nothing(env, server, capsys):
    from r1searcher.data.qa import load_qa, resolve_dataset

    server.put_hub("hotpotqa/dev.jsonl", flashrag_file())
    assert main(["data", "get", "hotpotqa-dev"]) == 0
    out = env / "eval" / "hotpotqa-dev.jsonl"
    assert resolve_dataset("hotpotqa-dev") == out
    recs = load_qa(out, on_error="fail")
    assert len(recs) == 60 and recs[0].id == "hotpotqa-dev-dev_0" and recs[0].answers == ["Paris"]
    assert recs[0].meta["metadata"]["type"] == "bridge"  # FlashRAG's other fields are kept
    man = json.loads((env / "downloads" / "manifest.json").read_text())["data"]["hotpotqa-dev"]
    assert man["count"] == 60 and man["revision"] == COMMIT
    assert man["raw_sha256"] == hashlib.sha256(server.hub["hotpotqa/dev.jsonl"]["data"]).hexdigest()
    assert [r[0] for r in server.log].count("GET") == 1
    n = len(server.log)
    capsys.readouterr()
    assert main(["data", "get", "hotpotqa-dev"]) == 0
    assert len(server.log) == n  # present and unchanged: no request at all
    assert "already present" in capsys.readouterr().out


def test_get_paper_eval_set_then_eval_rag_by_name(env, server, monkeypatch, tmp_path, smollm_tokenizer, capsys):
    """`data get hotpotqa wiki18-100w`, a BM25 index over the fetched corpus, then `eval --data hotpotqa`."""
    from tests.conftest import make_tiny_causal_lm

    data = r1_file()
    server.put_url(registry.REGISTRY["hotpotqa"].source.url, data)
    pin(monkeypatch, "hotpotqa", data)
    server.put_hub("retrieval-corpus/wiki18_100w.zip", wiki18_zip())
    assert main(["data", "get", "hotpotqa", "wiki18-100w"]) == 0
    corpus = env / "corpus" / "wiki18-100w.jsonl"
    rows = [json.loads(x) for x in corpus.read_text().splitlines()]
    assert [(r["title"], r["text"]) for r in rows] == [(t, x) for t, x in PASSAGES]
    assert not [f for f in _files(env) if "unzipped" in f or f.endswith(".tmp")]
    idx = tmp_path / "idx"
    assert main(["index", "build", "--corpus", str(corpus), "--kind", "bm25", "--out", str(idx)]) == 0
    model = tmp_path / "model"
    make_tiny_causal_lm(smollm_tokenizer).save_pretrained(model)
    smollm_tokenizer.save_pretrained(model)
    out = tmp_path / "ev"
    assert main(["eval", "--method", "rag", "--model", str(model), "--data", "hotpotqa", "--index", str(idx),
                 "--out", str(out), "-k", "2", "--batch-size", "4", "--limit", "3",
                 "rollout.max_new_tokens_per_turn=16", "rollout.max_response_tokens=48"]) == 0
    preds = [json.loads(x) for x in (out / "hotpotqa" / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == ["hotpotqa-1", "hotpotqa-2", "hotpotqa-3"]
    assert preds[0]["answers"] == ["Paris"]


def test_default_root_is_searched_by_name(tmp_path, monkeypatch, server, env):
    """With $R1SEARCHER_DATA unset, data get writes to <cache root>/data, which resolve_dataset searches."""
    from r1searcher.data.qa import resolve_dataset

    monkeypatch.delenv("R1SEARCHER_DATA")
    monkeypatch.setenv("R1SEARCHER_CACHE_DIR", str(tmp_path / "cache"))
    server.put_hub("musique/dev.jsonl", flashrag_file(5))
    assert main(["data", "get", "musique-dev"]) == 0
    assert resolve_dataset("musique-dev") == tmp_path / "cache" / "data" / "eval" / "musique-dev.jsonl"


def test_hub_download_cut_in_the_middle_resumes_with_a_range_request(env, server, monkeypatch):
    """hf_hub_download resumes a cut body within the same call, from the last whole chunk it wrote
    (10 MB chunks by default; 256 B here so that a small file shows it)."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "DOWNLOAD_CHUNK_SIZE", 256)
    data = flashrag_file()
    server.put_hub("2wikimultihopqa/dev.jsonl", data)
    server.drop["2wikimultihopqa/dev.jsonl"] = (1000, 1)
    assert main(["data", "get", "2wiki-dev"]) == 0
    gets = server.gets()
    assert len(gets) == 2 and gets[0][2] is None and gets[1][2] == "bytes=768-"
    assert len((env / "eval" / "2wiki-dev.jsonl").read_text().splitlines()) == 60


def test_plain_download_cut_in_the_middle_resumes_on_the_next_run(env, server, monkeypatch, capsys):
    """Three cuts use up the retries: the run fails naming the kept .part; the next run sends a Range."""
    data = r1_file(200)  # long enough to cut three times
    url = registry.REGISTRY["musique"].source.url
    server.put_url(url, data)
    pin(monkeypatch, "musique", data)
    server.drop["/" + url.split("://", 1)[1]] = (1000, 3)
    assert main(["data", "get", "musique"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stopped after 3000 bytes" in err[0] and "run the same command again to resume" in err[0]
    assert [g[2] for g in server.gets()] == [None, "bytes=1000-", "bytes=2000-"]
    part = [f for f in _files(env) if f.endswith(".part")]
    assert len(part) == 1 and part[0].startswith("downloads/")
    assert not (env / "eval" / "musique.jsonl").exists()
    assert main(["data", "get", "musique"]) == 0
    assert server.gets()[-1][2] == "bytes=3000-"
    assert not [f for f in _files(env) if ".part" in f]
    raw = env / "downloads" / registry.REGISTRY["musique"].source.key / "musique_500.jsonl"
    assert raw.read_bytes() == data
    assert len((env / "eval" / "musique.jsonl").read_text().splitlines()) == 200


def test_corrupt_files_are_refused_with_one_line_and_leave_nothing(env, server, monkeypatch, capsys, tmp_path):
    data = r1_file()
    url = registry.REGISTRY["2wiki"].source.url
    server.put_url(url, data)
    pin(monkeypatch, "2wiki", data.replace(b"Paris", b"Parus"))  # same size, other sha256
    assert main(["data", "get", "2wiki"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0] and "refused" in err[0]
    assert _files(env) == []
    # hub: the bytes served do not match the sha256 the hub publishes for the LFS file
    good = flashrag_file()
    server.put_hub("hotpotqa/dev.jsonl", good.replace(b"Paris", b"Parus"), published=hashlib.sha256(good).hexdigest())
    assert main(["data", "get", "hotpotqa-dev"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the published sha256" in err[0]
    assert _files(env) == []
    assert not [f for f in _files(tmp_path / "hf") if "/blobs/" in f or "/snapshots/" in f]


def test_offline_gives_one_line_naming_the_url_and_the_manual_alternative(env, monkeypatch, capsys):
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    monkeypatch.setenv("R1SEARCHER_DATA_MIRROR", closed)
    for name, url in (("bamboogle", registry.REGISTRY["bamboogle"].source.url),
                      ("bamboogle-test", f"{closed}/datasets/{REPO}/resolve/main/bamboogle/test.jsonl")):
        assert main(["data", "get", name]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("r1searcher data: error: cannot download")
        assert url.split("://", 1)[1] in err[0] and "download it by hand from https://" in err[0]
        assert "save it as " + str(env / "downloads") in err[0]
    assert _files(env) == []


def test_a_hand_downloaded_file_is_used_offline(env, monkeypatch, capsys):
    """The manual alternative works: the file saved where the offline message says is converted."""
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    from r1searcher.data.sources.fetch import by_hand_path

    hand = by_hand_path(env, registry.REGISTRY["bamboogle-test"])
    hand.parent.mkdir(parents=True)
    hand.write_bytes(flashrag_file(4))
    assert main(["data", "get", "bamboogle-test"]) == 2  # the hub's size of that file is known: 17031 bytes
    assert "17031" in capsys.readouterr().err
    pin(monkeypatch, "bamboogle-test", hand.read_bytes())
    assert main(["data", "get", "bamboogle-test"]) == 0
    assert len((env / "eval" / "bamboogle-test.jsonl").read_text().splitlines()) == 4


def test_kilt_dump_becomes_a_100_word_passage_corpus_and_its_hash_is_recorded(env, server):
    words = " ".join(f"w{i}" for i in range(150))
    kilt = _jsonl([{"wikipedia_id": "1", "wikipedia_title": "Paris",
                    "text": ["Paris\n", "Section::::History.\n", f"Paris is the capital of France. {words}\n"]},
                   {"wikipedia_id": "2", "wikipedia_title": "Berlin", "text": ["Berlin\n", "BULLET::::- Berlin is big.\n"]}])
    server.put_url(registry.KILT_URL, kilt)
    assert main(["data", "get", "kilt-100w"]) == 0
    rows = [json.loads(x) for x in (env / "corpus" / "kilt-100w.jsonl").read_text().splitlines()]
    assert [r["title"] for r in rows] == ["Paris", "Paris", "Berlin"]
    assert all(len(r["text"].split()) <= 100 for r in rows) and rows[2]["text"] == "Berlin is big."
    seen = json.loads((env / "downloads" / "manifest.json").read_text())["sources"][registry.KILT_URL]
    assert seen["sha256"] == hashlib.sha256(kilt).hexdigest() and seen["etag"]


def test_list_shows_sources_sizes_and_where(env, server, monkeypatch, capsys):
    data = r1_file()
    server.put_url(registry.REGISTRY["bamboogle"].source.url, data)
    pin(monkeypatch, "bamboogle", data)
    assert main(["data", "get", "bamboogle"]) == 0
    capsys.readouterr()
    assert main(["data", "list", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == set(registry.REGISTRY)
    assert rows["bamboogle"]["present"] == str(env / "eval" / "bamboogle.jsonl")
    assert rows["wiki18-100w"]["size"] == "5.1 GB" and "huggingface.co/datasets/RUC-NLPIR" in rows["wiki18-100w"]["source"]
    assert rows["kilt-100w"]["source"] == registry.KILT_URL


def test_unknown_name_is_one_line(env, capsys):
    assert main(["data", "get", "nq"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown data set 'nq'" in err[0] and "hotpotqa" in err[0]
