#include "server/dashboard_page.h"

namespace fs::server {
namespace {

// Element ids and classes used by tests/e2e/test_dashboard.py: #status, #iterations, #queues
// (.queue[data-level] > .job[data-request-id]), #batch, #kv-device, #kv-host, #swap, #latency,
// #charts, #chat-input, #chat-max-tokens, #chat-send, #chat-output, #chat-job, #key-dialog,
// #key-input, #key-save.
constexpr std::string_view kPage = R"FSHTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FastServe scheduler</title>
<style>
:root { --bg:#0f1419; --panel:#171e26; --line:#2a3440; --text:#d8e0e8; --dim:#7d8b99; --acc:#4fb3ff;
  --run:#3ecf8e; --pre:#f5b942; --off:#b38cff; --drop:#ff6b6b; --wait:#7d8b99; --mine:#ff9f43; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--text); font:13px/1.4 system-ui, sans-serif; }
header { display:flex; gap:18px; align-items:baseline; padding:10px 16px; border-bottom:1px solid var(--line); flex-wrap:wrap; }
header h1 { font-size:16px; margin:0; font-weight:600; }
header .kv { color:var(--dim); } header .kv b { color:var(--text); font-weight:600; }
#status.ok { color:var(--run); } #status.err { color:var(--drop); }
main { display:grid; grid-template-columns: minmax(0,1fr) 360px; gap:12px; padding:12px 16px; }
section { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:10px; }
section h2 { font-size:12px; text-transform:uppercase; letter-spacing:.06em; color:var(--dim); margin:0 0 8px; font-weight:600; }
.row { display:grid; grid-template-columns: repeat(4, minmax(0,1fr)); gap:12px; margin-bottom:12px; }
#queues { display:flex; gap:8px; overflow-x:auto; min-height:180px; align-items:flex-start; }
.queue { flex:0 0 150px; background:#121920; border:1px solid var(--line); border-radius:5px; padding:6px; }
.queue h3 { margin:0 0 6px; font-size:12px; display:flex; justify-content:space-between; }
.queue h3 span { color:var(--dim); font-weight:400; }
.job { border-left:4px solid var(--wait); background:#1d2630; border-radius:3px; padding:3px 6px; margin-bottom:4px; font-size:11px; }
.job .id { font-weight:600; } .job .meta { color:var(--dim); }
.job.running { border-color:var(--run); } .job.preempted { border-color:var(--pre); }
.job.offloaded { border-color:var(--off); } .job.dropped { border-color:var(--drop); }
.job.mine { outline:2px solid var(--mine); }
.more { color:var(--dim); font-size:11px; }
.badge { display:inline-block; padding:0 4px; border-radius:3px; font-size:10px; background:#2a3440; margin-left:3px; }
.badge.device { background:#1f4d3a; } .badge.host { background:#3d2f5c; } .badge.dropped { background:#5c2626; }
#batch { display:flex; flex-wrap:wrap; gap:4px; min-height:24px; }
.chip { background:#1f4d3a; border-radius:10px; padding:1px 8px; font-size:11px; }
.chip.prefill { background:#4d3d1f; } .chip.mine { outline:2px solid var(--mine); }
.gauge { height:14px; background:#0d1217; border:1px solid var(--line); border-radius:3px; overflow:hidden; margin:4px 0; }
.gauge div { height:100%; background:var(--acc); width:0; transition:width .3s; }
.big { font-size:18px; font-weight:600; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
td, th { padding:2px 4px; text-align:right; } th:first-child, td:first-child { text-align:left; }
th { color:var(--dim); font-weight:400; }
#charts { display:grid; grid-template-columns: repeat(4, minmax(0,1fr)); gap:12px; }
#charts canvas { width:100%; height:90px; background:#0d1217; border:1px solid var(--line); border-radius:3px; }
.legend { font-size:11px; color:var(--dim); } .legend i { display:inline-block; width:8px; height:8px; margin:0 3px 0 6px; }
textarea, input { width:100%; background:#0d1217; color:var(--text); border:1px solid var(--line); border-radius:4px; padding:6px; font:inherit; }
button { background:var(--acc); color:#001526; border:0; border-radius:4px; padding:6px 14px; font-weight:600; cursor:pointer; }
button:disabled { opacity:.5; cursor:default; }
#chat-output { white-space:pre-wrap; min-height:160px; max-height:420px; overflow-y:auto; background:#0d1217; border:1px solid var(--line); border-radius:4px; padding:8px; margin-top:8px; }
#chat-job { color:var(--dim); font-size:11px; margin-top:4px; }
.controls { display:flex; gap:8px; align-items:center; margin-top:6px; } .controls input { width:80px; }
#key-dialog { position:fixed; inset:0; background:rgba(0,0,0,.6); display:none; align-items:center; justify-content:center; }
#key-dialog.show { display:flex; }
#key-dialog div { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:16px; width:340px; }
</style>
</head>
<body>
<header>
  <h1>FastServe &middot; scheduler</h1>
  <span class="kv">policy <b id="policy">-</b> / <b id="kv-policy">-</b></span>
  <span class="kv">iterations <b id="iterations">0</b></span>
  <span class="kv">last iteration <b id="iter-ms">-</b></span>
  <span class="kv">running <b id="running">0</b> &middot; waiting <b id="waiting">0</b></span>
  <span class="kv">tokens/s <b id="tps">0</b></span>
  <span id="status" class="kv">connecting&hellip;</span>
</header>
<main>
<div>
  <section style="margin-bottom:12px">
    <h2>Queues (MLFQ levels, highest priority first)</h2>
    <div id="queues"></div>
    <div class="legend" style="margin-top:6px">
      <i style="background:var(--run)"></i>running <i style="background:var(--pre)"></i>preempted (KV on device)
      <i style="background:var(--off)"></i>offloaded (KV on host) <i style="background:var(--drop)"></i>dropped
      <i style="background:var(--wait)"></i>waiting <i style="background:var(--mine)"></i>your chat request
    </div>
  </section>
  <section style="margin-bottom:12px">
    <h2>Running batch (last iteration)</h2>
    <div id="batch"></div>
  </section>
  <div class="row">
    <section><h2>Device KV</h2><div class="big" id="kv-device-text">-</div><div class="gauge"><div id="kv-device"></div></div></section>
    <section><h2>Host KV</h2><div class="big" id="kv-host-text">-</div><div class="gauge"><div id="kv-host"></div></div></section>
    <section><h2>Swap traffic</h2><div id="swap">-</div></section>
    <section><h2>Counters</h2><div id="counters">-</div></section>
  </div>
  <section style="margin-bottom:12px">
    <h2>Latency (last 1000 requests)</h2>
    <table id="latency"><tr><th></th><th>n</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th></tr></table>
  </section>
  <section>
    <h2>Last 120 s</h2>
    <div id="charts">
      <div><canvas id="chart-jobs"></canvas><div class="legend"><i style="background:var(--run)"></i>running<i style="background:var(--pre)"></i>waiting</div></div>
      <div><canvas id="chart-kv"></canvas><div class="legend"><i style="background:var(--acc)"></i>device KV<i style="background:var(--off)"></i>host KV</div></div>
      <div><canvas id="chart-tps"></canvas><div class="legend"><i style="background:var(--run)"></i>generated tok/s<i style="background:var(--pre)"></i>prompt tok/s</div></div>
      <div><canvas id="chart-swap"></canvas><div class="legend"><i style="background:var(--off)"></i>swap MB/s</div></div>
    </div>
  </section>
</div>
<section>
  <h2>Chat</h2>
  <textarea id="chat-input" rows="4" placeholder="Ask something; watch your request move through the queues">Write a short poem about queues.</textarea>
  <div class="controls"><label>max tokens</label><input id="chat-max-tokens" type="number" value="128" min="1"><button id="chat-send">Send</button></div>
  <div id="chat-job"></div>
  <div id="chat-output"></div>
</section>
</main>
<div id="key-dialog"><div>
  <h2>API key</h2>
  <p class="kv">This server was started with <code>--api-key</code>. The key is kept in this tab only (sessionStorage).</p>
  <input id="key-input" type="password" placeholder="API key">
  <div class="controls"><button id="key-save">Use key</button></div>
</div></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const KEY = "fastserve_api_key";
let myRequest = null;

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const k = sessionStorage.getItem(KEY);
  if (k) h["Authorization"] = "Bearer " + k;
  return h;
}
function askKey() { $("key-dialog").classList.add("show"); $("key-input").focus(); }
$("key-save").onclick = () => {
  sessionStorage.setItem(KEY, $("key-input").value.trim());
  $("key-dialog").classList.remove("show");
};
$("key-input").addEventListener("keydown", (e) => { if (e.key === "Enter") $("key-save").click(); });

function fmtS(s) {
  if (!s) return "0";
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms";
  return s.toFixed(s < 10 ? 2 : 1) + " s";
}
function fmtBytes(b) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + u[i];
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function renderQueues(st) {
  const box = $("queues");
  const n = Math.max(st.queues.length, 4);
  const frag = document.createDocumentFragment();
  for (let i = 0; i < n; i++) {
    const q = st.queues[i] || { level: i, quantum_s: null, num_jobs: 0, jobs: [] };
    const col = el("div", "queue"); col.dataset.level = String(i);
    const h = el("h3", null, "Q" + (i + 1));
    h.appendChild(el("span", null, (q.quantum_s === null ? "\u221e" : fmtS(q.quantum_s)) + " \u00b7 " + q.num_jobs));
    col.appendChild(h);
    for (const j of q.jobs) {
      const c = el("div", "job " + j.state + (myRequest && j.request_id === myRequest ? " mine" : ""));
      c.dataset.requestId = j.request_id; c.dataset.jobId = String(j.id); c.dataset.state = j.state;
      const top = el("div"); top.appendChild(el("span", "id", "#" + j.id));
      top.appendChild(el("span", "badge " + j.kv, j.kv));
      if (j.preemptions) top.appendChild(el("span", "badge", "\u21bb" + j.preemptions));
      if (j.priority) top.appendChild(el("span", "badge", "p" + j.priority));
      c.appendChild(top);
      c.appendChild(el("div", "meta", j.prompt_tokens + " + " + j.generated_tokens + "/" + j.max_tokens + " tok"));
      c.appendChild(el("div", "meta", j.state === "running" ? "running" : "waits " + fmtS(j.waiting_s)));
      c.title = j.request_id + "\nstate " + j.state + ", KV " + j.kv + " (" + j.kv_blocks + " blocks)\nage " + fmtS(j.age_s) + ", demotions " + j.demotions;
      col.appendChild(c);
    }
    if (q.num_jobs > q.jobs.length) col.appendChild(el("div", "more", "+" + (q.num_jobs - q.jobs.length) + " more"));
    frag.appendChild(col);
  }
  box.replaceChildren(frag);
}

function renderBatch(st) {
  const frag = document.createDocumentFragment();
  for (const b of st.batch) {
    const c = el("span", "chip" + (b.prefill ? " prefill" : "") + (myRequest && b.request_id === myRequest ? " mine" : ""),
                 "#" + b.id + " Q" + (b.level + 1) + (b.prefill ? " prefill " + b.new_tokens : " decode"));
    c.dataset.requestId = b.request_id;
    frag.appendChild(c);
  }
  if (!st.batch.length) frag.appendChild(el("span", "more", "idle"));
  $("batch").replaceChildren(frag);
}

function gauge(name, pool, blockBytes) {
  $("kv-" + name).style.width = (pool.usage * 100).toFixed(1) + "%";
  $("kv-" + name + "-text").textContent = (pool.usage * 100).toFixed(1) + "% \u00b7 " + pool.used_blocks + "/" +
      pool.total_blocks + " blocks (" + fmtBytes(pool.used_blocks * blockBytes) + ")";
}

function renderNumbers(st) {
  $("policy").textContent = st.policy || "-";
  $("kv-policy").textContent = st.kv_policy || "-";
  $("iterations").textContent = st.iterations.total;
  $("iter-ms").textContent = fmtS(st.iterations.last_s);
  $("running").textContent = st.requests.running;
  $("waiting").textContent = st.requests.waiting;
  const tps = st.series.generation_tokens_per_s;
  $("tps").textContent = tps.length ? tps[tps.length - 1].toFixed(1) : "0";
  gauge("device", st.kv.device, st.kv.block_bytes);
  gauge("host", st.kv.host, st.kv.block_bytes);
  const sw = st.series.swap_bytes_per_s;
  $("swap").innerHTML = "";
  $("swap").append(el("div", null, "out (device\u2192host): " + fmtBytes(st.swap.bytes_out_total)),
                   el("div", null, "in (host\u2192device): " + fmtBytes(st.swap.bytes_in_total)),
                   el("div", null, "now: " + fmtBytes(sw.length ? sw[sw.length - 1] : 0) + "/s"),
                   el("div", null, "drops: " + st.swap.drops_total));
  const c = st.counters;
  $("counters").innerHTML = "";
  $("counters").append(el("div", null, "finished " + c.finished + " \u00b7 aborted " + c.aborted),
                       el("div", null, "preemptions " + c.preemptions),
                       el("div", null, "demotions " + c.demotions + " \u00b7 promotions " + c.promotions),
                       el("div", null, "tokens " + c.prompt_tokens + " in / " + c.generation_tokens + " out"));
  const t = $("latency");
  while (t.rows.length > 1) t.deleteRow(1);
  for (const [name, l] of [["TTFT", st.latency.ttft], ["TPOT", st.latency.tpot], ["JCT", st.latency.jct]]) {
    const r = t.insertRow();
    for (const v of [name, l.count, fmtS(l.mean_s), fmtS(l.p50_s), fmtS(l.p90_s), fmtS(l.p99_s)]) r.insertCell().textContent = v;
  }
}

function chart(id, series, colors, fixedMax) {
  const cv = $(id), dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth, h = cv.clientHeight;
  if (cv.width !== w * dpr || cv.height !== h * dpr) { cv.width = w * dpr; cv.height = h * dpr; }
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  let max = fixedMax || 0;
  if (!fixedMax) for (const s of series) for (const v of s) max = Math.max(max, v);
  if (max <= 0) max = 1;
  const n = 120;
  g.strokeStyle = "#2a3440"; g.lineWidth = 1;
  for (let k = 1; k < 4; k++) { g.beginPath(); g.moveTo(0, h * k / 4); g.lineTo(w, h * k / 4); g.stroke(); }
  series.forEach((s, i) => {
    g.strokeStyle = colors[i]; g.lineWidth = 1.5; g.beginPath();
    const off = n - s.length;
    s.forEach((v, k) => {
      const x = (off + k) / (n - 1) * w, y = h - 2 - (v / max) * (h - 14);
      if (k) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  });
  g.fillStyle = "#7d8b99"; g.font = "10px system-ui";
  g.fillText(fixedMax === 1 ? "100%" : (max >= 100 ? max.toFixed(0) : max.toPrecision(2)), 3, 10);
}

function renderCharts(st) {
  const css = getComputedStyle(document.documentElement);
  const c = (v) => css.getPropertyValue(v).trim();
  const s = st.series;
  chart("chart-jobs", [s.running, s.waiting], [c("--run"), c("--pre")]);
  chart("chart-kv", [s.device_kv_usage, s.host_kv_usage], [c("--acc"), c("--off")], 1);
  chart("chart-tps", [s.generation_tokens_per_s, s.prompt_tokens_per_s], [c("--run"), c("--pre")]);
  chart("chart-swap", [s.swap_bytes_per_s.map((b) => b / 1048576)], [c("--off")]);
}

function setStatus(text, ok) { const s = $("status"); s.textContent = text; s.className = "kv " + (ok ? "ok" : "err"); }

let lastState = null;
async function poll() {
  try {
    const r = await fetch("/v1/scheduler/state", { headers: authHeaders(), cache: "no-store" });
    if (r.status === 401) { setStatus("API key needed", false); askKey(); }
    else if (!r.ok) setStatus("HTTP " + r.status, false);
    else {
      const st = await r.json();
      lastState = st;
      renderNumbers(st); renderQueues(st); renderBatch(st); renderCharts(st);
      setStatus("live", true);
    }
  } catch (e) { setStatus("disconnected", false); }
  setTimeout(poll, 500);
}

async function sendChat() {
  const text = $("chat-input").value.trim();
  if (!text) return;
  $("chat-send").disabled = true;
  const out = $("chat-output"); out.textContent = ""; delete out.dataset.done; $("chat-job").textContent = "sending\u2026";
  myRequest = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ messages: [{ role: "user", content: text }], stream: true,
                             max_tokens: parseInt($("chat-max-tokens").value, 10) || 128 }) });
    if (r.status === 401) { askKey(); throw new Error("API key needed"); }
    if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error((e.error && e.error.message) || ("HTTP " + r.status)); }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "", n = 0, done = false;
    while (!done) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buf += dec.decode(chunk.value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, cut); buf = buf.slice(cut + 2);
        for (const line of ev.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") { done = true; break; }
          const j = JSON.parse(data);
          if (j.error) throw new Error(j.error.message);
          if (j.id && !myRequest) { myRequest = j.id; $("chat-job").textContent = "request " + j.id + " (outlined in the queues)"; }
          const ch = j.choices && j.choices[0];
          if (ch && ch.delta && ch.delta.content) { out.textContent += ch.delta.content; n++; out.scrollTop = out.scrollHeight; }
          if (ch && ch.finish_reason) $("chat-job").textContent = "request " + myRequest + ": " + ch.finish_reason + ", " + n + " chunks";
        }
      }
    }
    out.dataset.done = "1";
  } catch (e) {
    $("chat-job").textContent = "error: " + e.message;
  } finally {
    $("chat-send").disabled = false;
  }
}
$("chat-send").onclick = sendChat;
window.addEventListener("resize", () => { if (lastState) renderCharts(lastState); });
poll();
</script>
</body>
</html>
)FSHTML";

}  // namespace

std::string_view dashboard_page_html() { return kPage; }

}  // namespace fs::server
