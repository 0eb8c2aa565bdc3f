"""The viewer page's CSS and JavaScript (vanilla, no libraries: the page must open offline).

Everything the script writes into the page goes through ``esc`` (``fmt`` escapes its result too),
numbers included: the rows come from files on disk, and a field that should hold a number may hold
markup. Only the page's own constants (class names, column titles) are written as they are.
"""

CSS = r"""
:root{--bg:#fff;--fg:#1f2328;--mut:#6b7280;--line:#e5e7eb;--chip:#f3f4f6;--acc:#2563eb;
--think:#f3f4f6;--think-fg:#4b5563;--query:#dbeafe;--query-fg:#1e40af;--docs:#fef3c7;--docs-fg:#78350f;
--answer:#dcfce7;--answer-fg:#14532d;--ok:#15803d;--bad:#b91c1c}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:10px 16px;border-bottom:1px solid var(--line);display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:17px;margin:0}
header .runs{color:var(--mut);font-size:12px}
.tabs button{font:inherit;border:1px solid var(--line);background:#fff;padding:3px 12px;border-radius:6px;cursor:pointer}
.tabs button.on{background:var(--acc);color:#fff;border-color:var(--acc)}
#filters{padding:8px 16px;border-bottom:1px solid var(--line);display:grid;grid-template-columns:140px 1fr;gap:4px 10px;align-items:center}
#filters .lab{color:var(--mut);font-size:12px;text-align:right}
.chips{display:flex;flex-wrap:wrap;gap:4px}
.chip{font:12px system-ui,sans-serif;border:1px solid var(--line);background:var(--chip);border-radius:12px;padding:1px 9px;cursor:pointer}
.chip .n{color:var(--mut);margin-left:4px}
.chip.on{background:var(--acc);color:#fff;border-color:var(--acc)}.chip.on .n{color:#dbeafe}
.chip.zero{opacity:.45}
input[type=number]{width:80px}input[type=search]{width:340px}
input{font:inherit;padding:2px 6px;border:1px solid #cbd5e1;border-radius:5px}
#summary{padding:6px 16px;color:var(--mut);font-size:13px}#summary b{color:var(--fg)}
.grid{display:grid;grid-template-columns:150px 52px 92px 46px 60px 52px 26px minmax(200px,3fr) minmax(120px,1.2fr);gap:0 8px;align-items:center}
.head{padding:4px 16px;border-bottom:2px solid var(--line);font-size:12px;color:var(--mut);position:sticky;top:0;background:#fff;z-index:1}
.head .sort{cursor:pointer;user-select:none}.head .sort.on{color:var(--acc);font-weight:600}
.row{padding:4px 16px;border-bottom:1px solid var(--line);cursor:pointer;font-size:13px}
.row:hover{background:#f9fafb}.row.open{background:#eff6ff}
.row>span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--ok);font-weight:700}.bad{color:var(--bad);font-weight:700}
.stop{font-size:11px;border-radius:4px;padding:0 5px;background:var(--chip)}
.stop.answer{background:#dcfce7}.stop.length,.stop.max_searches{background:#fee2e2}
.detail{padding:10px 16px 14px 28px;border-bottom:1px solid var(--line);background:#fcfcfd}
.kv{margin:2px 0}.kv>b{display:inline-block;min-width:88px;color:var(--mut);font-weight:600}
.parts span{display:inline-block;background:var(--chip);border-radius:4px;padding:0 6px;margin:0 4px 2px 0;font-size:12px}
.legend{margin:8px 0 4px;font-size:12px;color:var(--mut)}
.legend span{padding:0 6px;border-radius:3px;margin-right:6px}
pre.resp{white-space:pre-wrap;word-break:break-word;font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
margin:0;padding:8px 10px;border:1px solid var(--line);border-radius:6px;background:#fff;max-height:640px;overflow:auto}
.k-think{background:var(--think);color:var(--think-fg);font-style:italic}
.k-query{background:var(--query);color:var(--query-fg);font-weight:600}
.k-documents{background:var(--docs);color:var(--docs-fg)}
.k-answer{background:var(--answer);color:var(--answer-fg);font-weight:700}
.tag{font-size:10.5px;opacity:.7;font-style:normal;font-weight:400}
.u{background-image:repeating-linear-gradient(135deg,rgba(120,53,15,.2) 0 3px,transparent 3px 7px)}
.pager{padding:8px 16px;display:flex;gap:8px;align-items:center}
.pager button{font:inherit;padding:2px 10px;border:1px solid var(--line);background:#fff;border-radius:5px;cursor:pointer}
.pager button:disabled{opacity:.4;cursor:default}
.cmpgrid{display:grid;grid-template-columns:minmax(240px,2fr) minmax(160px,1fr) minmax(160px,1fr) 90px;gap:0 10px;align-items:center}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.cols h3{margin:6px 0 0;padding-left:16px;font-size:13px}
.diff{font-size:11px;border-radius:4px;padding:0 5px}.diff.d0{background:#fde68a}.diff.d1{background:#e0e7ff}.diff.d2{background:var(--chip)}
.empty{padding:24px 16px;color:var(--mut)}
.warn{padding:4px 16px;background:#fef3c7;color:#78350f;font-size:13px;border-bottom:1px solid #fde68a}
.bad-values code{background:#fee2e2;padding:0 4px;border-radius:3px;white-space:pre-wrap;word-break:break-all}
"""

JS = r"""
(async function () {
"use strict";
const $ = (s) => document.querySelector(s);
const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const fmt = (x, d = 3) => esc(x == null ? "–" : (+x).toFixed(d).replace(/\.?0+$/, "") || "0");

async function loadData() {
  const el = document.getElementById("data");
  if (el.dataset.encoding !== "gzip-base64") return JSON.parse(el.textContent);
  const bin = atob(el.textContent.trim());
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}
const t0 = performance.now();
const D = await loadData();
const tData = performance.now();
const R = D.rows, RUNS = D.meta.runs, T = D.meta.tags;
const EVAL_RUNS = RUNS.map((r, i) => i).filter((i) => RUNS[i].kind === "eval");
const HAS_STEPS = R.some((r) => r.st != null);

// ---------------------------------------------------------------- response segments + loss mask
const TAG_KIND = {}, TAG_NEXT = {};
[[T.query_open, "query", "query"], [T.query_close, "query", "think"], [T.docs_open, "documents", "documents"],
 [T.docs_close, "documents", "think"], [T.think_open, "think", "think"], [T.think_close, "think", "text"],
 [T.answer_open, "answer", "answer"], [T.answer_close, "answer", "text"]].forEach(([t, k, n]) => { TAG_KIND[t] = k; TAG_NEXT[t] = n; });
const TAG_RE = new RegExp("(" + Object.keys(TAG_KIND).map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|") + ")");

function pieces(text) {  // [start, end, kind, isTag]; the prompt ends with <think>, so untagged text before </think> is thinking
  let state = (text.includes(T.think_close) || text.includes(T.query_open)) ? "think" : "text";
  const out = []; let pos = 0;
  for (const part of text.split(TAG_RE)) {
    if (!part) continue;
    if (part in TAG_KIND) { out.push([pos, pos + part.length, TAG_KIND[part], true]); state = TAG_NEXT[part]; }
    else out.push([pos, pos + part.length, state, false]);
    pos += part.length;
  }
  return out;
}
function renderResponse(r) {
  const text = r.text || "", um = r.um || [];
  let html = "", j = 0;
  for (const [a, b, kind, tag] of pieces(text)) {
    let x = a;
    while (x < b) {
      while (j < um.length && um[j][1] <= x) j++;
      let y = b, u = false;
      if (j < um.length) {
        if (um[j][0] <= x) { u = true; y = Math.min(b, um[j][1]); } else y = Math.min(b, um[j][0]);
      }
      html += `<span class="k-${kind}${tag ? " tag" : ""}${u ? " u" : ""}"${u ? ' title="not trained (loss mask 0)"' : ""}>${esc(text.slice(x, y))}</span>`;
      x = y;
    }
  }
  return html;
}
function detail(r) {
  const run = RUNS[r.s];
  const mark = r.ok == null ? "" : r.ok ? ' <span class="ok">✓ correct</span>' : ' <span class="bad">✗ wrong</span>';
  const parts = Object.entries(r.parts || {}).map(([k, v]) => `<span>${esc(k)} ${typeof v === "number" ? fmt(v) : esc(v)}</span>`).join("");
  const maskNote = r.mask === "recorded" ? "loss mask recorded at rollout" : "loss mask from the document tags";
  const bad = r.bad ? `<div class="kv bad-values"><b>Bad values</b>` + Object.entries(r.bad).map(([k, v]) => `<span>${esc(k)}: <code>${esc(v)}</code></span>`).join(" · ") + ` <span class="n">(wrong type: left out)</span></div>` : "";
  return `<div class="detail">
<div class="kv"><b>Question</b>${esc(r.q)}</div>
<div class="kv"><b>Gold</b>${esc((r.gold || []).join(" | "))}</div>
<div class="kv"><b>Prediction</b><span class="k-answer">${esc(r.pred == null ? "(no answer)" : r.pred)}</span>${mark}</div>
<div class="kv"><b>Reward</b>${r.r == null ? "–" : "<b>" + fmt(r.r) + "</b>"} <span class="parts">${parts}</span></div>
<div class="kv"><b>Scores</b>F1 ${fmt(r.f1)} · EM ${fmt(r.em)} · cover-EM ${fmt(r.cem)} · stop <span class="stop ${esc(r.stop)}">${esc(r.stop)}</span> · searches ${esc(r.ns ?? "–")}</div>
<div class="kv"><b>Source</b>${esc(run.label)}${run.method && run.method !== "train" ? " (" + esc(run.method) + ")" : ""} · ${esc(r.ds)}${r.st != null ? " · step " + esc(r.st) : ""}${r.id != null ? " · id " + esc(r.id) : ""}</div>${bad}
<div class="legend"><span class="k-think">think</span><span class="k-query">query</span><span class="k-documents">documents</span><span class="k-answer">answer</span><span class="u">not trained (loss mask 0)</span>${maskNote}</div>
<pre class="resp">${renderResponse(r)}</pre></div>`;
}

// ---------------------------------------------------------------- state, filters, facets
const FACETS = [
  {key: "run", title: "run", get: (r) => r.s, label: (v) => RUNS[v].label + (RUNS[v].method && RUNS[v].method !== "train" && !RUNS[v].label.endsWith(RUNS[v].method) ? " (" + RUNS[v].method + ")" : "")},
  {key: "ds", title: "dataset", get: (r) => r.ds},
  {key: "stop", title: "stop reason", get: (r) => r.stop},
  {key: "ok", title: "correct (cover-EM)", get: (r) => (r.ok == null ? "no gold" : r.ok ? "correct" : "wrong")},
  {key: "ns", title: "searches", get: (r) => (r.ns == null ? "?" : r.ns >= 4 ? "4+" : String(r.ns))},
];
const VALUES = {};
for (const f of FACETS) {
  const seen = new Map();
  for (const r of R) { const v = f.get(r); seen.set(v, (seen.get(v) || 0) + 1); }
  VALUES[f.key] = [...seen.keys()].sort((a, b) => (typeof a === "number" ? a - b : String(a).localeCompare(String(b), undefined, {numeric: true})));
}
const S = {tab: "list", sel: Object.fromEntries(FACETS.map((f) => [f.key, new Set()])), stepMin: null, stepMax: null,
  text: "", sort: "order", desc: false, page: 0, per: 50, open: new Set(),
  cmpA: EVAL_RUNS[0], cmpB: EVAL_RUNS[EVAL_RUNS.length - 1], onlyDiff: false};

let hay = null;
function textOk(q) {
  if (!q) return null;
  if (!hay) hay = R.map((r) => (r.q + "\n" + (r.gold || []).join(" ") + "\n" + (r.pred || "") + "\n" + r.text).toLowerCase());
  const m = new Uint8Array(R.length);
  for (let i = 0; i < R.length; i++) m[i] = hay[i].includes(q) ? 1 : 0;
  return m;
}
function passes(i, r, tm) {  // the text and step filters
  if (tm && !tm[i]) return false;
  if (S.stepMin != null && (r.st == null || r.st < S.stepMin)) return false;
  if (S.stepMax != null && (r.st == null || r.st > S.stepMax)) return false;
  return true;
}
const SORTS = {order: null, step: (r) => r.st ?? -1, reward: (r) => r.r ?? -1e9, f1: (r) => r.f1 ?? -1, searches: (r) => r.ns ?? -1, length: (r) => r.text.length};

function filtered() {  // the rows shown, and per facet the counts under every other filter (one pass)
  const tm = textOk(S.text);
  const counts = Object.fromEntries(FACETS.map((f) => [f.key, new Map()]));
  const idx = [], vals = new Array(FACETS.length);
  for (let i = 0; i < R.length; i++) {
    const r = R[i];
    if (!passes(i, r, tm)) continue;
    let failed = -1, nfail = 0;
    for (let k = 0; k < FACETS.length; k++) {
      vals[k] = FACETS[k].get(r);
      const sel = S.sel[FACETS[k].key];
      if (sel.size && !sel.has(vals[k])) { failed = k; nfail++; }
    }
    if (nfail > 1) continue;
    if (nfail === 0) idx.push(i);
    for (let k = 0; k < FACETS.length; k++) {
      if (nfail === 1 && k !== failed) continue;
      const c = counts[FACETS[k].key]; c.set(vals[k], (c.get(vals[k]) || 0) + 1);
    }
  }
  const key = SORTS[S.sort];
  if (key) idx.sort((a, b) => (key(R[a]) - key(R[b])) * (S.desc ? -1 : 1) || a - b);
  else if (S.desc) idx.reverse();
  return {idx, counts};
}

function renderFacets(counts) {
  let h = "";
  for (const f of FACETS) {
    if (S.tab === "compare" && f.key !== "ds") continue;
    if (VALUES[f.key].length < 2 && !S.sel[f.key].size && f.key !== "ok") continue;
    h += `<div class="lab">${f.title}</div><div class="chips" data-facet="${f.key}">` + VALUES[f.key].map((v) => {
      const n = counts ? counts[f.key].get(v) || 0 : 0, on = S.sel[f.key].has(v);
      if (S.tab === "compare" && !n && !on) return "";
      return `<button class="chip${on ? " on" : ""}${n ? "" : " zero"}" data-facet="${f.key}" data-v="${esc(v)}">${esc(f.label ? f.label(v) : v)}<span class="n">${counts ? esc(n) : ""}</span></button>`;
    }).join("") + "</div>";
  }
  if (HAS_STEPS && S.tab === "list") h += `<div class="lab">step</div><div><input id="f-stepmin" type="number" placeholder="from" value="${esc(S.stepMin)}"> – <input id="f-stepmax" type="number" placeholder="to" value="${esc(S.stepMax)}"></div>`;
  h += `<div class="lab">text</div><div><input id="f-text" type="search" placeholder="question, gold, prediction or response contains…" value="${esc(S.text)}"></div>`;
  if (S.tab === "compare") {
    const pick = (which) => EVAL_RUNS.map((i) => `<button class="chip${S[which] === i ? " on" : ""}" data-pick="${which}" data-v="${esc(i)}">${esc(FACETS[0].label(i))}</button>`).join("");
    h += `<div class="lab">run A</div><div class="chips" id="pickA">${pick("cmpA")}</div><div class="lab">run B</div><div class="chips" id="pickB">${pick("cmpB")}</div>`;
    h += `<div class="lab">show</div><div class="chips"><button id="only-diff" class="chip${S.onlyDiff ? " on" : ""}">only where A and B differ</button></div>`;
  }
  $("#filters").innerHTML = h;
}

function pager(total) {
  const pages = Math.max(1, Math.ceil(total / S.per));
  S.page = Math.min(S.page, pages - 1);
  return `<div class="pager"><button id="prev"${S.page ? "" : " disabled"}>‹ prev</button><span id="pageinfo">page ${esc(S.page + 1)} of ${esc(pages)}</span><button id="next"${S.page < pages - 1 ? "" : " disabled"}>next ›</button></div>`;
}
function mean(idx, f) { let s = 0, n = 0; for (const i of idx) { const v = f(R[i]); if (v != null) { s += v; n++; } } return n ? s / n : null; }

function renderList() {
  const {idx, counts} = filtered();
  renderFacets(counts);
  const acc = mean(idx, (r) => (r.ok == null ? null : +r.ok));
  $("#summary").innerHTML = `<b id="count">${esc(idx.length)}</b> of ${esc(R.length)} trajectories · mean reward <b>${fmt(mean(idx, (r) => r.r))}</b> · mean F1 <b>${fmt(mean(idx, (r) => r.f1))}</b> · correct <b>${esc(acc == null ? "–" : (100 * acc).toFixed(1) + "%")}</b> · searches/trajectory <b>${fmt(mean(idx, (r) => r.ns), 2)}</b>`;
  const col = (k, t, cls = "") => `<span class="sort${cls}${S.sort === k ? " on" : ""}" data-sort="${k}">${t}${S.sort === k ? (S.desc ? " ▼" : " ▲") : ""}</span>`;
  let h = `<div class="grid head">${col("order", "run · dataset")}${col("step", "step", " num")}<span>stop</span>${col("searches", "srch", " num")}${col("reward", "reward", " num")}${col("f1", "F1", " num")}<span></span><span>question</span>${col("length", "prediction")}</div>`;
  const page = idx.slice(S.page * S.per, (S.page + 1) * S.per);
  for (const i of page) {
    const r = R[i], open = S.open.has(i);
    h += `<div class="grid row${open ? " open" : ""}" data-i="${esc(i)}"><span title="${esc(RUNS[r.s].label)}">${esc(RUNS[r.s].label)} · ${esc(r.ds)}</span><span class="num">${esc(r.st)}</span><span><span class="stop ${esc(r.stop)}">${esc(r.stop)}</span></span><span class="num">${esc(r.ns ?? "–")}</span><span class="num">${fmt(r.r)}</span><span class="num">${fmt(r.f1, 2)}</span><span>${r.ok == null ? "" : r.ok ? '<span class="ok">✓</span>' : '<span class="bad">✗</span>'}</span><span title="${esc(r.q)}">${esc(r.q)}</span><span>${esc(r.pred ?? "")}</span></div>`;
    if (open) h += detail(r);
  }
  if (!idx.length) h += `<div class="empty">No trajectory matches these filters.</div>`;
  $("#main").innerHTML = h + pager(idx.length);
}

// ---------------------------------------------------------------- compare two eval runs
const norm = (s) => String(s ?? "").toLowerCase().replace(/[^a-z0-9 ]/g, " ").replace(/\s+/g, " ").trim();
function pairs() {
  const tm = textOk(S.text), key = (r) => r.ds + "\u0001" + (r.id ?? r.q);
  const b = new Map();
  for (let i = 0; i < R.length; i++) if (R[i].s === S.cmpB) b.set(key(R[i]), i);
  const out = [], counts = {ds: new Map()};
  for (let i = 0; i < R.length; i++) {
    const r = R[i];
    if (r.s !== S.cmpA || !b.has(key(r))) continue;
    const j = b.get(key(r)), o = R[j];
    if (tm && !tm[i] && !tm[j]) continue;
    counts.ds.set(r.ds, (counts.ds.get(r.ds) || 0) + 1);
    if (S.sel.ds.size && !S.sel.ds.has(r.ds)) continue;
    const d = r.ok !== o.ok ? 0 : norm(r.pred) !== norm(o.pred) ? 1 : 2;  // 0: correctness differs, 1: prediction differs
    if (S.onlyDiff && d === 2) continue;
    out.push({i, j, d, gap: Math.abs((r.f1 ?? 0) - (o.f1 ?? 0))});
  }
  out.sort((x, y) => x.d - y.d || y.gap - x.gap || x.i - y.i);
  return {out, counts};
}
function renderCompare() {
  if (EVAL_RUNS.length < 2) { $("#filters").innerHTML = ""; $("#summary").innerHTML = ""; $("#main").innerHTML = `<div class="empty">Side by side needs two eval runs (predictions.jsonl) on the same questions; this page has ${esc(EVAL_RUNS.length)}.</div>`; return; }
  const {out, counts} = pairs();
  renderFacets(counts);
  const n = (f) => out.filter(f).length, A = (p) => R[p.i], B = (p) => R[p.j];
  $("#summary").innerHTML = `<b id="count">${esc(out.length)}</b> questions in both · A right, B wrong: <b>${esc(n((p) => A(p).ok && !B(p).ok))}</b> · A wrong, B right: <b>${esc(n((p) => !A(p).ok && B(p).ok))}</b> · both right: <b>${esc(n((p) => A(p).ok && B(p).ok))}</b> · both wrong: <b>${esc(n((p) => !A(p).ok && !B(p).ok))}</b> · predictions differ: <b>${esc(n((p) => p.d < 2))}</b>`;
  const mk = (r) => `${r.ok == null ? "" : r.ok ? '<span class="ok">✓</span> ' : '<span class="bad">✗</span> '}${esc(r.pred ?? "(no answer)")} <span class="n">F1 ${fmt(r.f1, 2)} · ${esc(r.ns ?? "–")} srch</span>`;
  const lab = ["correct differs", "answer differs", "same"];
  let h = `<div class="cmpgrid head"><span>question</span><span>A: ${esc(RUNS[S.cmpA].label)}</span><span>B: ${esc(RUNS[S.cmpB].label)}</span><span></span></div>`;
  for (const p of out.slice(S.page * S.per, (S.page + 1) * S.per)) {
    const a = R[p.i], b = R[p.j], k = p.i + ":" + p.j, open = S.open.has(k);
    h += `<div class="cmpgrid row${open ? " open" : ""}" data-pair="${esc(k)}"><span title="${esc(a.q)}">${esc(a.q)}</span><span>${mk(a)}</span><span>${mk(b)}</span><span><span class="diff d${p.d}">${lab[p.d]}</span></span></div>`;
    if (open) h += `<div class="cols"><div><h3>A: ${esc(RUNS[a.s].label)}</h3>${detail(a)}</div><div><h3>B: ${esc(RUNS[b.s].label)}</h3>${detail(b)}</div></div>`;
  }
  if (!out.length) h += `<div class="empty">No question is in both runs under these filters.</div>`;
  $("#main").innerHTML = h + pager(out.length);
}

function render() {
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("on", b.dataset.tab === S.tab));
  (S.tab === "list" ? renderList : renderCompare)();
}

// ---------------------------------------------------------------- events
document.addEventListener("click", (e) => {
  const t = e.target.closest("button, .row, .sort");
  if (!t) return;
  if (t.dataset.tab) { S.tab = t.dataset.tab; S.page = 0; S.open.clear(); }
  else if (t.dataset.facet) { const s = S.sel[t.dataset.facet], f = FACETS.find((x) => x.key === t.dataset.facet);
    const v = VALUES[f.key].find((x) => String(x) === t.dataset.v); s.has(v) ? s.delete(v) : s.add(v); S.page = 0; }
  else if (t.dataset.pick) { S[t.dataset.pick] = +t.dataset.v; S.page = 0; S.open.clear(); }
  else if (t.id === "only-diff") { S.onlyDiff = !S.onlyDiff; S.page = 0; }
  else if (t.dataset.sort) { if (S.sort === t.dataset.sort) S.desc = !S.desc; else { S.sort = t.dataset.sort; S.desc = t.dataset.sort !== "order"; } S.page = 0; }
  else if (t.id === "prev") S.page--;
  else if (t.id === "next") S.page++;
  else if (t.dataset.i != null) { const i = +t.dataset.i; S.open.has(i) ? S.open.delete(i) : S.open.add(i); }
  else if (t.dataset.pair != null) { const k = t.dataset.pair; S.open.has(k) ? S.open.delete(k) : S.open.add(k); }
  else return;
  render();
});
let timer = null;
document.addEventListener("input", (e) => {
  const id = e.target.id;
  if (id === "f-text") { S.text = e.target.value.trim().toLowerCase(); }
  else if (id === "f-stepmin" || id === "f-stepmax") { const v = e.target.value === "" ? null : +e.target.value; S[id === "f-stepmin" ? "stepMin" : "stepMax"] = v; }
  else return;
  S.page = 0;
  clearTimeout(timer);
  timer = setTimeout(() => { const pos = e.target.selectionStart; render(); const el = document.getElementById(id); if (el) { el.focus(); try { el.setSelectionRange(pos, pos); } catch (_) {} } }, 150);
});
$("#tabs").innerHTML = `<button data-tab="list">trajectories (${esc(R.length)})</button>` + (EVAL_RUNS.length >= 2 ? `<button data-tab="compare">side by side</button>` : "");
$("#runs").textContent = RUNS.map((r) => `${r.label}: ${r.n}`).join(" · ");
$("#issues").innerHTML = RUNS.flatMap((r) => r.issues || []).map((t) => `<div class="warn">⚠ ${esc(t)}</div>`).join("");
render();
window.__viewer = {rows: R.length, readyMs: performance.now(), dataMs: tData - t0, renderMs: performance.now() - tData};
document.body.dataset.ready = "1";
})().catch((e) => {  // the message may quote the data: text, not markup
  const pre = document.createElement("pre");
  pre.style.color = "#b91c1c";
  pre.textContent = "viewer error: " + String(e && e.stack || e);
  document.body.prepend(pre);
  document.body.dataset.ready = "error";
});
"""
