"""The dashboard page's script and style, served by :mod:`leanml.dashboard.web` (no CDN).

The script is vanilla JavaScript (no framework, no chart library): it polls ``data.json`` and
draws SVG line charts itself (``lineChart``, ~60 lines). Every value from the server is put into
the page with ``textContent`` or as an SVG attribute, never parsed as HTML, so a model name or a
label such as ``<script>`` is shown, not run. Kept as Python strings so they ship inside the
package without package-data configuration.
"""

from __future__ import annotations

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,sans-serif;margin:0;background:#f5f7fa;color:#1f2933}
header{background:#1f2933;color:#fff;padding:.7em 1.2em;display:flex;gap:1.2em;
  align-items:center;flex-wrap:wrap}
header h1{font-size:1.2em;margin:0}
#status{font-size:.85em;color:#cbd2d9}
#status.error{color:#ff8a8a}
main{padding:1em 1.2em}
h2{font-size:1.05em;margin:1.2em 0 .5em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1em}
.card{background:#fff;border:1px solid #d9dee4;border-radius:8px;padding:.8em 1em}
.card h3{margin:0 0 .4em;font-size:1.05em;display:flex;justify-content:space-between;gap:.5em;
  align-items:center;word-break:break-all}
.badge{display:inline-block;padding:.12em .65em;border-radius:1em;color:#fff;font-size:.8em;
  font-weight:600;white-space:nowrap}
.badge.healthy{background:#1b998b}.badge.degraded{background:#e09200}
.badge.unhealthy{background:#d7263d}.badge.unknown{background:#7b8794}
table{border-collapse:collapse;width:100%;font-size:.86em}
td,th{padding:.2em .4em;border-bottom:1px solid #eef1f4;text-align:left;vertical-align:top}
th{color:#52606d;font-weight:500}
.reasons{color:#b3261e;font-size:.82em;margin:.3em 0 0;padding-left:1.1em}
.shadow{font-size:.82em;margin:.3em 0 0;padding-left:1.1em;color:#52606d}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:.6em;
  margin-top:.4em}
.chart{background:#fff;border:1px solid #d9dee4;border-radius:6px;padding:.3em}
.chart svg{width:100%;height:auto;display:block}
.muted{color:#7b8794;font-size:.85em}
.admin{margin-top:.5em;font-size:.85em;display:flex;gap:.4em;align-items:center;flex-wrap:wrap}
input,select,button{font:inherit;font-size:.9em}
.level-critical{color:#d7263d;font-weight:600}.level-warning{color:#b57800;font-weight:600}
"""

JS = r"""
"use strict";
(function () {
  const body = document.body;
  const base = body.dataset.base || "";
  const refreshMs = Math.max(500, Number(body.dataset.refresh || "2") * 1000);
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2b7bba", "#f0a202", "#d7263d", "#1b998b", "#7d5ba6"];
  // admin form state survives the re-render of every poll: chosen variant, last outcome
  const chosen = new Map();
  const notes = new Map();

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function fmt(v, digits, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return "-";
    return Number(v).toFixed(digits) + (unit || "");
  }
  function band(intervals, key, needed) {  // " [lo, hi]" of a 95% interval, or why none
    const b = (intervals || {})[key];
    if (b && b[0] !== null && b[1] !== null) return ` [${fmt(b[0], 3)}, ${fmt(b[1], 3)}]`;
    const n = (needed || {})[key];
    return n ? ` [no interval: n < ${n}]` : "";
  }
  function ms(v) { return v === null || v === undefined ? "-" : (v * 1000).toFixed(2) + " ms"; }
  function clock(t) { return new Date(t * 1000).toISOString().slice(11, 19); }

  // A small SVG line chart: series = [{name, values: [[t, y], ...]}]
  function lineChart(title, unit, series, opts) {
    const W = 420, H = 190, L = 52, R = 26, T = 26, B = 30;
    const box = el("div", {class: "chart"});
    const s = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
    s.appendChild(svg("title", {}, title));
    s.appendChild(svg("text", {x: L, y: 15, "font-size": 12, "font-weight": 600}, title));
    const pts = series.flatMap((x) => x.values).filter((p) => p[1] !== null && isFinite(p[1]));
    if (pts.length === 0) {
      s.appendChild(svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", "font-size": 12,
        fill: "#7b8794"}, "waiting for data"));
      box.appendChild(s);
      box.dataset.ready = "empty";
      return box;
    }
    let t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]));
    if (t1 - t0 < 1) { t0 -= 30; t1 += 30; }
    let y1 = Math.max(...pts.map((p) => p[1])) * 1.1;
    if (opts && opts.ymax) y1 = Math.max(y1, opts.ymax);
    if (!(y1 > 0)) y1 = 1;
    const X = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
    const Y = (y) => H - B - (H - T - B) * y / y1;
    for (let i = 0; i <= 4; i++) {
      const y = y1 * i / 4;
      s.appendChild(svg("line", {x1: L, x2: W - R, y1: Y(y), y2: Y(y), stroke: "#eef1f4"}));
      s.appendChild(svg("text", {x: L - 4, y: Y(y) + 4, "text-anchor": "end", "font-size": 10,
        fill: "#52606d"}, y1 >= 10 ? y.toFixed(0) : y.toFixed(y1 >= 1 ? 1 : 2)));
    }
    for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
      s.appendChild(svg("text", {x: X(t), y: H - B + 14, "text-anchor": anchor,
        "font-size": 10, fill: "#52606d"}, clock(t)));
    }
    s.appendChild(svg("text", {x: 12, y: (H - B + T) / 2, "font-size": 10, fill: "#52606d",
      transform: `rotate(-90 12 ${(H - B + T) / 2})`, "text-anchor": "middle"}, unit));
    s.appendChild(svg("text", {x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle",
      "font-size": 10, fill: "#52606d"}, "time (UTC)"));
    series.forEach((ser, i) => {
      const good = ser.values.filter((p) => p[1] !== null && isFinite(p[1]));
      if (!good.length) return;
      const color = ser.color || COLORS[i % COLORS.length];
      const d = good.map((p, j) => (j ? "L" : "M") + X(p[0]).toFixed(1) + " " +
        Y(p[1]).toFixed(1)).join(" ");
      s.appendChild(svg("path", {d: d, fill: "none", stroke: color, "stroke-width": 1.6,
        "stroke-dasharray": ser.dash || ""}));
      s.appendChild(svg("text", {x: L + 8 + i * 92, y: T + 10, "font-size": 10, fill: color},
        ser.name));
    });
    box.appendChild(s);
    box.dataset.ready = "drawn";
    return box;
  }

  function card(m, admin) {
    const c = el("div", {class: "card model", "data-model": m.name});
    const h = el("h3");
    h.appendChild(el("span", {class: "model-name"}, m.name));
    const health = m.health || "unknown";
    h.appendChild(el("span", {class: "badge " + health, "data-health": health}, health));
    c.appendChild(h);
    c.appendChild(el("div", {class: "muted"},
      `version ${m.version || "-"} · variant ${m.variant || "-"}` +
      (m.variants && m.variants.length ? ` (available: ${m.variants.join(", ")})` : "")));
    if (m.paused) c.appendChild(el("div", {class: "muted paused"},
      "monitoring paused: predictions are served but not recorded"));
    const t = el("table");
    const rows = [
      ["predictions", m.predictions === null ? "-" : Number(m.predictions).toLocaleString("en")],
      ["throughput", `${fmt(m.per_s, 0)} /s · ${fmt(m.per_min, 0)} /min`],
      ["latency p50 / p95 / p99", `${ms(m.p50)} / ${ms(m.p95)} / ${ms(m.p99)}`],
      ["accuracy: realized | estimated (95%)",
        (m.realized === null ? "no labels yet" : `${fmt(m.realized, 3)}` +
          (m.realized_lower === null || m.realized_lower === undefined ? "" :
            ` [${fmt(m.realized_lower, 3)}, ${fmt(m.realized_upper, 3)}]`) +
          ` (n=${m.realized_n})`) + " | " +
        (m.estimated === null ? "-" : `${fmt(m.estimated, 3)}` +
          (m.estimated_lower === null || m.estimated_lower === undefined ? "" :
            ` [${fmt(m.estimated_lower, 3)}, ${fmt(m.estimated_upper, 3)}]`) +
          ` (n=${m.estimated_n ?? "-"}` +
          (m.estimated_method ? `, ${m.estimated_method} map)` : ")"))],
      ["drift: class PSI / confidence KS (95%)",
        `${fmt(m.class_psi, 3)}${band(m.drift_intervals, "class_psi", m.drift_needed)} ` +
        `(n=${m.drift_n ?? "-"}) / ` +
        `${fmt(m.confidence_ks, 3)}${band(m.drift_intervals, "confidence_ks")} ` +
        `(n=${m.confidence_n ?? "-"})`],
      ["error rate", m.error_rate === null ? "-" : fmt(100 * m.error_rate, 2, "%")],
      ["cache", m.cache_hit_rate === null ? "not reported" :
        `${fmt(100 * m.cache_hit_rate, 1, "%")} hits · ${m.cache_entries ?? "-"} entries`],
      ["micro-batches", m.batch_mean === null ? "not reported" :
        `mean ${fmt(m.batch_mean, 1)} texts · queue wait p99 ${ms(m.queue_wait_p99)}`],
      ["dropped / evicted", String(m.dropped)],
    ];
    for (const [k, v] of rows) {
      const tr = el("tr");
      tr.appendChild(el("th", {}, k));
      tr.appendChild(el("td", {}, v));
      t.appendChild(tr);
    }
    c.appendChild(t);
    if (m.shadow && m.shadow.length) {  // the shadow check: nothing when none ran
      const ul = el("ul", {class: "shadow" + (m.shadow_failed ? " fallen" : "")});
      m.shadow.forEach((line, i) => ul.appendChild(el("li",
        i === 1 && m.shadow_failed ? {class: "level-critical"} : {}, line)));
      c.appendChild(ul);
    }
    if (m.reasons && m.reasons.length) {
      const ul = el("ul", {class: "reasons"});
      for (const r of m.reasons) ul.appendChild(el("li", {}, r));
      c.appendChild(ul);
    }
    if (admin && m.variants && m.variants.length > 1) {
      const d = el("div", {class: "admin"});
      const sel = el("select", {"aria-label": "variant for " + m.name});
      const want = chosen.has(m.name) ? chosen.get(m.name) : m.variant;
      for (const v of m.variants) {
        const o = el("option", {value: v}, v);
        if (v === want) o.selected = true;
        sel.appendChild(o);
      }
      sel.addEventListener("change", () => chosen.set(m.name, sel.value));
      const b = el("button", {type: "button"}, "switch variant");
      const out = el("span", {class: "muted"}, notes.get(m.name) || "");
      b.addEventListener("click", () => switchVariant(m.name, sel.value, out));
      d.append("serve ", sel, b, out);
      c.appendChild(d);
    }
    return c;
  }

  async function switchVariant(name, variant, out) {
    const token = document.getElementById("token").value;
    out.textContent = "…";
    try {
      const r = await fetch(base + "/variant", {method: "POST",
        headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
        body: JSON.stringify({model: name, variant: variant})});
      const j = await r.json().catch(() => ({}));
      if (r.ok) chosen.delete(name);
      notes.set(name, r.ok ? "switched to " + (j.variant || variant) :
        "refused (" + r.status + "): " + (j.detail || ""));
    } catch (e) {
      notes.set(name, "failed: " + e);
    }
    out.textContent = notes.get(name);
  }

  function charts(m, series) {
    const box = el("div", {class: "charts", "data-model": m.name});
    const s = series || {t: []};
    const pair = (key) => s.t.map((t, i) => [t, s[key] ? s[key][i] : null]);
    const msPair = (key) => pair(key).map((p) => [p[0], p[1] === null ? null : p[1] * 1000]);
    box.appendChild(lineChart(m.name + ": throughput", "predictions/s",
      [{name: "per second (1-min mean)", values: pair("rps")}]));
    box.appendChild(lineChart(m.name + ": latency", "ms",
      [{name: "p50", values: msPair("p50")}, {name: "p95", values: msPair("p95")},
       {name: "p99", values: msPair("p99")}]));
    box.appendChild(lineChart(m.name + ": accuracy", "share correct",
      [{name: "estimated", values: pair("estimated")},
       {name: "realized", values: pair("realized"), color: "#1b998b"}], {ymax: 1}));
    return box;
  }

  function render(d) {
    const admin = !!d.admin;
    document.getElementById("admin-box").hidden = !admin;
    const models = document.getElementById("models");
    models.replaceChildren(...d.models.map((m) => card(m, admin)));
    const ch = document.getElementById("charts");
    ch.replaceChildren(...d.models.map((m) => {
      const sec = el("section", {class: "model-charts"});
      sec.appendChild(el("h3", {}, m.name));
      sec.appendChild(charts(m, d.series[m.name]));
      return sec;
    }));
    const tb = document.getElementById("alerts");
    const rows = d.alerts.map((a) => {
      const tr = el("tr");
      tr.appendChild(el("td", {}, a.model));
      tr.appendChild(el("td", {}, a.rule));
      tr.appendChild(el("td", {class: "level-" + a.level}, a.level));
      tr.appendChild(el("td", {}, a.value === null ? "-" : Number(a.value).toPrecision(4)));
      tr.appendChild(el("td", {}, a.reason));
      return tr;
    });
    if (!rows.length) {
      const tr = el("tr");
      tr.appendChild(el("td", {colspan: "5", class: "muted"}, "no active alerts"));
      rows.push(tr);
    }
    tb.replaceChildren(...rows);
    const res = document.getElementById("resources");
    const r = d.resources || {};
    const items = [
      ["resident memory", r.rss_bytes ? (r.rss_bytes / 1048576).toFixed(1) + " MiB" : "-"],
      ["CPU", fmt(r.cpu_percent, 1, " %")],
      ["threads", r.threads ?? "-"],
      ["GC collections (gen 0/1/2)", r.gc_collections ? r.gc_collections.join(" / ") : "-"],
      ["store on disk", r.disk_bytes ? (r.disk_bytes / 1048576).toFixed(2) + " MiB" : "-"],
    ];
    res.replaceChildren(...items.map(([k, v]) => {
      const tr = el("tr");
      tr.appendChild(el("th", {}, k));
      tr.appendChild(el("td", {}, v));
      return tr;
    }));
    const st = document.getElementById("status");
    st.className = "";
    st.textContent = "updated " + clock(d.ts) + " UTC · every " + refreshMs / 1000 + " s";
    body.dataset.updated = String(d.ts);
  }

  async function poll() {
    try {
      const r = await fetch(base + "/data.json", {cache: "no-store"});
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
    } catch (e) {
      const st = document.getElementById("status");
      st.className = "error";
      st.textContent = "cannot reach the server (" + e.message + "), retrying";
    }
    setTimeout(poll, refreshMs);
  }
  document.getElementById("admin-box").addEventListener("submit", (e) => e.preventDefault());
  const tok = document.getElementById("token");
  tok.value = sessionStorage.getItem("leanml-admin-token") || "";
  tok.addEventListener("change", () => sessionStorage.setItem("leanml-admin-token", tok.value));
  poll();
})();
"""
