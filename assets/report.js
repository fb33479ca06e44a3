// drivekit run report (aggregate/report.html). DATA is embedded by aggregate; rollout chunks and
// series load on demand from report/*.js (script tags work from file://, fetch does not).
// State lives in the URL hash (#view=scenes&sort=…&dir=…&q=…&page=…), so every view can be
// linked, reloaded and tested.
"use strict";
(function () {
  document.body.dataset.errors = "0";
  window.addEventListener("error", function () {
    document.body.dataset.errors = String(Number(document.body.dataset.errors) + 1);
  });
  const D = DATA;
  const M = D.metrics;
  const PAGE = 50;
  const chunks = {};
  const series = {};
  const waiting = {};
  window.DK = {
    chunk: function (k, rows) { chunks[k] = rows; done("chunk" + k); },
    series: function (key, s) { series[key] = s; },
    done: function (key) { done(key); },
  };
  function done(key) { (waiting[key] || []).forEach(function (f) { f(); }); delete waiting[key]; }
  function load(key, src, f) {
    if (waiting[key]) { waiting[key].push(f); return; }
    waiting[key] = [f];
    const s = document.createElement("script");
    s.src = src;
    s.onerror = function () { waiting[key] = null; delete waiting[key]; f(new Error(src)); };
    document.head.appendChild(s);
  }
  function loadChunk(k, f) { if (chunks[k]) f(); else load("chunk" + k, "report/rollouts-" + k + ".js", f); }
  function loadAll(f) {
    let left = D.chunks;
    if (left === 0) { f(); return; }
    for (let k = 0; k < D.chunks; k++) loadChunk(k, function () { if (--left === 0) f(); });
  }

  // ---- helpers -----------------------------------------------------------------------------
  function h(tag, attrs, kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs, kids) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) { if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); }
    (kids || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function num(v, d) {
    if (v == null || !isFinite(v)) return "–";
    if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(2) : v.toFixed(d == null ? 3 : d);
  }
  function pct(v) { return v == null || !isFinite(v) ? "–" : (100 * v).toFixed(1) + " %"; }
  function state() {
    const p = new URLSearchParams(location.hash.slice(1));
    const o = {}; p.forEach(function (v, k) { o[k] = v; });
    o.view = o.view || "overview";
    return o;
  }
  function go(o) { location.hash = new URLSearchParams(o).toString(); }
  function link(o, text) { return h("a", { href: "#" + new URLSearchParams(o).toString(), text: text }); }
  function metricIndex(name) { return M.findIndex(function (m) { return m.name === name; }); }
  // Worse-is-larger key of a value of metric i (for sorting worst first and colouring).
  function badness(i, v) {
    if (v == null) return -Infinity;
    return M[i].better === "higher" ? -v : v;
  }
  const oc = metricIndex("offroad_or_collision");
  const defaultSort = oc >= 0 ? "m" + oc : (D.score_column != null ? "m" + D.score_column : "id");

  // ---- layout ------------------------------------------------------------------------------
  const app = document.getElementById("app");
  const H = D.header;
  const views = [["overview", "Overview"], ["scenes", "Scenes"], ["rollouts", "Rollouts"]];
  if (D.compare) views.push(["compare", "Comparison"]);
  function frame(view) {
    app.textContent = "";
    const nav = h("nav", { "aria-label": "views" }, views.map(function (v) {
      const a = link({ view: v[0] }, v[1]);
      if (v[0] === view) a.setAttribute("aria-current", "page");
      return a;
    }));
    app.appendChild(h("header", {}, [
      h("h1", {}, [H.run_name + " ", h("span", { class: "sub", text: H.rollouts + " rollouts · " + D.scenes.length + " scenes" })]),
      nav,
    ]));
    const main = h("main", { id: "view-" + view });
    app.appendChild(main);
    return main;
  }

  // ---- overview ----------------------------------------------------------------------------
  function overview() {
    const main = frame("overview");
    const facts = [
      ["run", H.run_name], ["run_uuid", H.run_uuid], ["started", H.started],
      ["simulated by drivekit", H.drivekit_version], ["aggregated by drivekit", H.aggregated_by],
      ["config digest (sha256 of wizard-config.yaml)", H.config_digest],
      ["backend", [H.backend, H.backend_device].filter(Boolean).join(" · ")], ["host", H.host],
      ["shards", H.shards], ["batches (aggregated / found)", H.batches_used + " / " + H.batches],
      ["rollouts (kept / failed)", H.kept + " / " + H.failed],
    ];
    main.appendChild(h("section", {}, [h("h2", { text: "Run" }), h("dl", { class: "facts" },
      [].concat.apply([], facts.map(function (f) { return [h("dt", { text: f[0] }), h("dd", { text: f[1] == null ? "–" : String(f[1]) })]; })))]));

    // Rates as bars with their intervals.
    const sec = h("section", {}, [h("h2", { text: "Safety rates" })]);
    if (D.rates.length === 0) sec.appendChild(h("p", { text: "The run has none of the rate metrics." }));
    else {
      const top = Math.max(0.05, Math.max.apply(null, D.rates.map(function (r) { return r.hi || r.rate; })) * 1.1);
      const W = 560, row = 34, left = 150;
      const svg = s("svg", { viewBox: "0 0 " + W + " " + (row * D.rates.length + 24), class: "chart", role: "img", "aria-label": "safety rates with 95 % intervals" });
      D.rates.forEach(function (r, j) {
        const y = j * row + 6, x = function (v) { return left + (W - left - 90) * v / top; };
        svg.appendChild(s("text", { x: left - 8, y: y + 16, "text-anchor": "end", text: r.label }));
        svg.appendChild(s("rect", { x: left, y: y + 4, width: Math.max(1, x(r.rate) - left), height: 16, class: "bar" }));
        svg.appendChild(s("line", { x1: x(r.lo), x2: x(r.hi), y1: y + 12, y2: y + 12, class: "ci" }));
        [r.lo, r.hi].forEach(function (v) { svg.appendChild(s("line", { x1: x(v), x2: x(v), y1: y + 6, y2: y + 18, class: "ci" })); });
        svg.appendChild(s("text", { x: x(r.hi) + 6, y: y + 16, text: pct(r.rate) }));
      });
      svg.appendChild(s("text", { x: left, y: row * D.rates.length + 20, class: "axis", text: "0" }));
      svg.appendChild(s("text", { x: W - 90, y: row * D.rates.length + 20, class: "axis", "text-anchor": "end", text: pct(top) }));
      sec.appendChild(svg);
      const t = table(["rate", "events / rollouts", "rate", "95 % interval", "interval"], D.rates.map(function (r) {
        return [r.label + " (" + r.name + ")", r.k + " / " + r.n, pct(r.rate), pct(r.lo) + " – " + pct(r.hi), r.method + (r.method.startsWith("bootstrap") ? " (" + r.scenes + " scenes)" : "")];
      }));
      sec.appendChild(t);
    }
    main.appendChild(sec);

    // Continuous metrics as box plots, each on its own scale.
    const cs = h("section", {}, [h("h2", { text: "Continuous metrics" }),
      h("p", { class: "note", text: "Box: p25–p75 with the median; whiskers: p05–p95, over kept rollouts. Each row on its own scale." })]);
    const W2 = 760, row2 = 30, left2 = 230;
    const svg2 = s("svg", { viewBox: "0 0 " + W2 + " " + (row2 * D.continuous.length + 8), class: "chart", role: "img", "aria-label": "continuous metrics: medians and p05–p95" });
    D.continuous.forEach(function (c, j) {
      const lo = c.p05, hi = c.p95, span = hi - lo || Math.abs(hi) || 1;
      const x = function (v) { return left2 + (W2 - left2 - 230) * (v - lo + span * 0.02) / (span * 1.04); };
      const y = j * row2 + 4;
      svg2.appendChild(s("text", { x: left2 - 8, y: y + 15, "text-anchor": "end", text: c.name }));
      svg2.appendChild(s("line", { x1: x(c.p05), x2: x(c.p95), y1: y + 11, y2: y + 11, class: "ci" }));
      svg2.appendChild(s("rect", { x: x(c.p25), y: y + 3, width: Math.max(1, x(c.p75) - x(c.p25)), height: 16, class: "box" }));
      svg2.appendChild(s("line", { x1: x(c.median), x2: x(c.median), y1: y + 2, y2: y + 20, class: "median" }));
      svg2.appendChild(s("text", { x: W2 - 222, y: y + 15, class: "axis", text: num(c.median) + " (" + num(c.p05) + " … " + num(c.p95) + ")" }));
    });
    cs.appendChild(svg2);
    main.appendChild(cs);

    // Benchmark score profiles.
    const ps = h("section", {}, [h("h2", { text: "Benchmark scores" })]);
    const prow = [];
    D.profiles.forEach(function (p) {
      if (p.left_out) prow.push([p.profile, "–", "–", "left out: " + p.left_out]);
      p.scores.forEach(function (sc) { prow.push([p.profile, sc.name, num(sc.mean), sc.n + " scored" + (sc.unscored ? ", " + sc.unscored + " unscored" : "") + (p.notes.length ? "; " + p.notes.join("; ") : "")]); });
    });
    ps.appendChild(prow.length ? table(["profile", "score", "mean", "notes"], prow) : h("p", { text: "No score profile." }));
    main.appendChild(ps);

    // Failures and problems.
    const fs = h("section", {}, [h("h2", { text: "Failed, incomplete and missing (" + (D.failed.length + D.problems.length) + ")" })]);
    if (D.failed.length) fs.appendChild(table(["scene", "rollout", "error"], D.failed.slice(0, 500).map(function (f) { return [f.clipgt_id, f.rollout_id, f.error]; })));
    if (D.problems.length) fs.appendChild(table(["kind", "where", "what"], D.problems.slice(0, 500).map(function (p) { return [p.kind, p.path, p.message]; })));
    if (D.failed.length + D.problems.length > 1000) fs.appendChild(h("p", { text: "…the rest in metrics_results.txt and results-summary.json." }));
    if (!D.failed.length && !D.problems.length) fs.appendChild(h("p", { text: "None: every batch found was aggregated." }));
    main.appendChild(fs);
    main.appendChild(h("p", { class: "note" }, ["Files: ", h("a", { href: "metrics_results.txt", text: "metrics_results.txt" }), " · ",
      h("a", { href: "results-summary.json", text: "results-summary.json" }), " · ", h("a", { href: "metrics_results.png", text: "metrics_results.png" }), " · ",
      h("a", { href: "videos/index.html", text: "violation videos" })]));
  }

  function table(head, rows, opts) {
    const t = h("table", opts || {});
    t.appendChild(h("thead", {}, [h("tr", {}, head.map(function (c) { return typeof c === "string" ? h("th", { scope: "col", text: c }) : c; }))]));
    t.appendChild(h("tbody", {}, rows.map(function (r) { return h("tr", {}, r.map(function (c) { return c instanceof Node ? h("td", {}, [c]) : h("td", { text: c == null ? "–" : String(c) }); })); })));
    return t;
  }

  // ---- scenes ------------------------------------------------------------------------------
  function sortKey(st, get) {
    const key = st.sort || defaultSort;
    const dir = st.dir || (key === "id" ? "asc" : "desc");
    return function (a, b) {
      const x = get(a, key), y = get(b, key);
      let c = (x == null) - (y == null);
      if (c === 0 && x != null) c = typeof x === "string" ? (x < y ? -1 : x > y ? 1 : 0) : x - y;
      if (dir === "desc" && (x != null && y != null)) c = -c;
      return c;
    };
  }
  function sceneValue(sc, key) {
    if (key === "id") return sc.id;
    if (key === "n") return sc.n;
    if (key === "failed") return sc.failed;
    const i = Number(key.slice(1));
    const v = sc.means[i];
    return v == null ? null : v;
  }
  function header(st, key, label, view) {
    const cur = st.sort || defaultSort;
    const dir = cur === key ? (st.dir || (key === "id" ? "asc" : "desc")) : null;
    const next = Object.assign({}, st, { view: view, sort: key, dir: dir === "desc" ? "asc" : "desc", page: 0 });
    return h("th", { scope: "col", "aria-sort": dir ? (dir === "asc" ? "ascending" : "descending") : "none" },
      [link(next, label + (dir ? (dir === "asc" ? " ▲" : " ▼") : ""))]);
  }
  function filterBox(st, view, placeholder) {
    const inp = h("input", { type: "search", id: "filter", value: st.q || "", placeholder: placeholder, "aria-label": placeholder });
    inp.addEventListener("change", function () { go(Object.assign({}, st, { view: view, q: inp.value, page: 0 })); });
    return h("p", {}, [inp]);
  }
  function pager(st, view, total) {
    const page = Number(st.page || 0), pages = Math.max(1, Math.ceil(total / PAGE));
    const p = h("p", { class: "pager" }, [total + " rows · page " + (page + 1) + " of " + pages + " "]);
    if (page > 0) p.appendChild(link(Object.assign({}, st, { view: view, page: page - 1 }), "← previous"));
    p.appendChild(document.createTextNode(" "));
    if (page + 1 < pages) p.appendChild(link(Object.assign({}, st, { view: view, page: page + 1 }), "next →"));
    return p;
  }
  function shownMetrics() {
    // Directed metrics first (the ones that can be worse), then the rest.
    const idx = M.map(function (m, i) { return i; });
    return idx.filter(function (i) { return M[i].better !== "neither"; }).concat(idx.filter(function (i) { return M[i].better === "neither"; }));
  }
  function scenes() {
    const st = state();
    const main = frame("scenes");
    main.appendChild(h("h2", { text: "Scenes" }));
    main.appendChild(h("p", { class: "note", text: "Each value is the scene's mean over its kept rollouts. Worst first by default; click a column to sort, type to filter by scene id or tag." }));
    main.appendChild(filterBox(st, "scenes", "filter scenes (id or tag)"));
    const q = (st.q || "").toLowerCase();
    const rows = D.scenes.filter(function (sc) { return !q || sc.id.toLowerCase().includes(q) || sc.tags.some(function (t) { return t.toLowerCase().includes(q); }); });
    rows.sort(sortKey(st, sceneValue));
    const page = Number(st.page || 0);
    const cols = shownMetrics();
    const head = [header(st, "id", "scene", "scenes"), h("th", { scope: "col", text: "tags" }), header(st, "n", "rollouts", "scenes"), header(st, "failed", "failed", "scenes")]
      .concat(cols.map(function (i) { return header(st, "m" + i, M[i].name, "scenes"); }));
    const body = rows.slice(page * PAGE, (page + 1) * PAGE).map(function (sc) {
      return [link({ view: "rollouts", q: sc.id }, sc.id), sc.tags.join(", "), sc.n, sc.failed].concat(cols.map(function (i) { return num(sc.means[i]); }));
    });
    main.appendChild(pager(st, "scenes", rows.length));
    main.appendChild(h("div", { class: "scroll" }, [table(head, body, { id: "scenes-table" })]));
    // Heat map of the rows on this page: each metric coloured from best (light) to worst (red)
    // over all scenes.
    main.appendChild(h("h2", { text: "Heat map (this page's scenes × directed metrics)" }));
    const dirCols = cols.filter(function (i) { return M[i].better !== "neither"; });
    const ranges = dirCols.map(function (i) {
      const v = D.scenes.map(function (sc) { return badness(i, sc.means[i]); }).filter(isFinite);
      return [Math.min.apply(null, v), Math.max.apply(null, v)];
    });
    const hm = h("table", { class: "heat", id: "heat" });
    hm.appendChild(h("thead", {}, [h("tr", {}, [h("th", { scope: "col", text: "scene" })].concat(dirCols.map(function (i) { return h("th", { scope: "col" }, [h("span", { text: M[i].name })]); })))]));
    hm.appendChild(h("tbody", {}, rows.slice(page * PAGE, (page + 1) * PAGE).map(function (sc) {
      return h("tr", {}, [h("th", { scope: "row", text: sc.id })].concat(dirCols.map(function (i, j) {
        const b = badness(i, sc.means[i]), r = ranges[j];
        const f = isFinite(b) && r[1] > r[0] ? (b - r[0]) / (r[1] - r[0]) : 0;
        const light = Math.round(96 - 41 * f);
        return h("td", { style: "background:hsl(" + (50 - 50 * f) + ",85%," + light + "%)", title: M[i].name + " " + num(sc.means[i]), text: num(sc.means[i], 2) });
      })));
    })));
    main.appendChild(h("div", { class: "scroll" }, [hm]));
  }

  // ---- rollouts ----------------------------------------------------------------------------
  function allRollouts() {
    const out = [];
    for (let k = 0; k < D.chunks; k++) chunks[k].forEach(function (r, j) { out.push({ i: k * D.chunk_size + j, r: r }); });
    return out;
  }
  function rollValue(x, key) {
    if (key === "id") return D.scenes[x.r[0]].id + "/" + x.r[1];
    if (key === "n" || key === "failed") return null;
    const v = x.r[6][Number(key.slice(1))];
    return v == null ? null : v;
  }
  function rollouts() {
    const st = state();
    const main = frame("rollouts");
    main.appendChild(h("h2", { text: "Rollouts" }));
    main.appendChild(filterBox(st, "rollouts", "filter rollouts (scene or rollout id)"));
    const box = h("div", { text: "loading " + D.n_rollouts + " rollouts…" });
    main.appendChild(box);
    loadAll(function (err) {
      if (err) { box.textContent = "Could not load " + err.message + " (is report/ beside report.html?)"; return; }
      box.textContent = "";
      const q = (st.q || "").toLowerCase();
      const rows = allRollouts().filter(function (x) { return !q || (D.scenes[x.r[0]].id + "/" + x.r[1]).toLowerCase().includes(q); });
      rows.sort(sortKey(st, rollValue));
      const page = Number(st.page || 0);
      const cols = shownMetrics().slice(0, 12);
      const head = [header(st, "id", "scene / rollout", "rollouts"), h("th", { scope: "col", text: "video" })]
        .concat(cols.map(function (i) { return header(st, "m" + i, M[i].name, "rollouts"); }));
      const body = rows.slice(page * PAGE, (page + 1) * PAGE).map(function (x) {
        return [link({ view: "rollout", i: x.i }, D.scenes[x.r[0]].id + " / " + x.r[1] + (x.r[2] ? "" : " (dropped)")),
          x.r[3] ? h("a", { href: x.r[3], text: "▶ mp4" }) : "–"].concat(cols.map(function (i) { return num(x.r[6][i]); }));
      });
      box.appendChild(pager(st, "rollouts", rows.length));
      box.appendChild(h("div", { class: "scroll" }, [table(head, body, { id: "rollouts-table" })]));
      document.body.dataset.loaded = "1";
    });
  }

  // ---- one rollout -------------------------------------------------------------------------
  function rollout() {
    const st = state();
    const i = Number(st.i || 0), k = Math.floor(i / D.chunk_size);
    const main = frame("rollout");
    loadChunk(k, function (err) {
      if (err || !chunks[k] || !chunks[k][i - k * D.chunk_size]) { main.appendChild(h("p", { text: "No rollout " + i + "." })); return; }
      const r = chunks[k][i - k * D.chunk_size];
      const scene = D.scenes[r[0]].id;
      main.appendChild(h("h2", { text: scene + " / " + r[1] + (r[2] ? "" : " — dropped by the aggregation (img_is_black)") }));
      const files = r[5] ? [h("a", { href: r[5] + "/metrics.parquet", text: "metrics.parquet" }), " · ", h("a", { href: r[5] + "/rollout.asl", text: "rollout.asl" }), " · ", h("a", { href: r[5] + "/", text: "batch dir" })] : ["–"];
      main.appendChild(h("p", {}, ["Files: "].concat(files).concat([" · ", link({ view: "scenes", q: scene }, "scene"), " · ", link({ view: "rollouts", q: scene }, "its scene's rollouts")])));
      const wrap = h("div", { class: "two" });
      main.appendChild(wrap);
      const left = h("div", {});
      if (r[3]) left.appendChild(h("video", { controls: "", preload: "metadata", src: r[3], width: "384" }));
      else left.appendChild(h("p", { class: "note", text: "No video for this rollout (rendered with --video none, or not linked)." }));
      left.appendChild(table(["metric (after the aggregation)", "value"], shownMetrics().map(function (j) { return [M[j].name, num(r[6][j])]; }), { id: "rollout-metrics" }));
      wrap.appendChild(left);
      const right = h("div", { id: "series" });
      wrap.appendChild(right);
      if (r[4] === null) {
        right.appendChild(h("p", { class: "note", text: "Per-step series are kept for every rollout of runs up to 2000 rollouts and for the 500 worst of larger runs; this one's are in its metrics.parquet." }));
        document.body.dataset.loaded = "1";
        return;
      }
      // r[4]: its series file (one per batch, keyed by file and rollout id).
      const key = r[4] + "/" + r[1];
      const plot = function (e) {
        if (e || !series[key]) { right.appendChild(h("p", { text: "Could not load its series." })); return; }
        plotSeries(right, series[key]);
        document.body.dataset.loaded = "1";
      };
      if (series[key]) plot(); else load("series" + r[4], "report/series-" + r[4] + ".js", plot);
    });
  }
  function plotSeries(el, sr) {
    el.appendChild(h("p", { class: "note", text: "Grey: rows the aggregation left out (before eval_relevant, after the first incident or the deviation cut-off). Red marks: steps where an incident metric is > 0." }));
    const t = sr.t, n = t.length;
    const t0 = t[0], t1 = t[n - 1] > t0 ? t[n - 1] : t0 + 1;
    const incident = ["collision_any", "collision_front", "collision_lateral", "collision_rear", "offroad", "collision_at_fault"];
    // The metrics the aggregation cuts on first, then the rest by name; a metric with one value
    // (a rollout-level score) is in the table, not plotted.
    const first = ["plan_deviation", "dist_to_gt_trajectory", "collision_any", "offroad", "progress_rel_to_total", "eval_relevant"];
    const rank = function (j) { const r = first.indexOf(sr.names[j]); return r < 0 ? first.length : r; };
    const order = sr.names.map(function (nm, j) { return j; }).filter(function (j) {
      return sr.values[j] && sr.values[j].filter(function (x) { return x != null; }).length > 1;
    }).sort(function (a, b) { return rank(a) - rank(b) || sr.names[a].localeCompare(sr.names[b]); });
    const events = [];
    sr.names.forEach(function (nm, j) { if (incident.includes(nm) && sr.values[j]) sr.values[j].forEach(function (v, q) { if (v > 0) events.push(q); }); });
    order.forEach(function (j) {
      const v = sr.values[j];
      if (!v) return;
      const fin = v.filter(function (x) { return x != null; });
      if (!fin.length) return;
      let lo = Math.min.apply(null, fin), hi = Math.max.apply(null, fin);
      if (hi === lo) { hi += 0.5; lo -= 0.5; }
      const W = 420, HH = 86, L = 46, B = 16;
      const x = function (tt) { return L + (W - L - 6) * (tt - t0) / (t1 - t0); };
      const y = function (vv) { return 6 + (HH - B - 6) * (hi - vv) / (hi - lo); };
      const svg = s("svg", { viewBox: "0 0 " + W + " " + HH, class: "series", role: "img", "aria-label": sr.names[j] + " over time" });
      if (sr.start > 0) svg.appendChild(s("rect", { x: L, y: 4, width: x(t[sr.start]) - L, height: HH - B - 2, class: "cut" }));
      if (sr.end < n) svg.appendChild(s("rect", { x: x(t[sr.end - 1]), y: 4, width: W - 6 - x(t[sr.end - 1]), height: HH - B - 2, class: "cut" }));
      let d = "";
      v.forEach(function (vv, q) { if (vv != null) d += (d && v[q - 1] != null ? "L" : "M") + x(t[q]).toFixed(1) + " " + y(vv).toFixed(1); });
      svg.appendChild(s("path", { d: d, class: "line" }));
      events.forEach(function (q) { svg.appendChild(s("circle", { cx: x(t[q]), cy: HH - B - 2, r: 2.5, class: "event" })); });
      svg.appendChild(s("text", { x: L + 4, y: 16, class: "title", text: sr.names[j] }));
      svg.appendChild(s("text", { x: L - 4, y: 12, "text-anchor": "end", class: "axis", text: num(hi, 2) }));
      svg.appendChild(s("text", { x: L - 4, y: HH - B, "text-anchor": "end", class: "axis", text: num(lo, 2) }));
      svg.appendChild(s("text", { x: L, y: HH - 3, class: "axis", text: num(t0, 1) + " s" }));
      svg.appendChild(s("text", { x: W - 6, y: HH - 3, "text-anchor": "end", class: "axis", text: num(t1, 1) + " s" }));
      el.appendChild(svg);
    });
  }

  // ---- comparison --------------------------------------------------------------------------
  function comparison() {
    const C = D.compare;
    const main = frame("compare");
    main.appendChild(h("h2", { text: "Against " + C.base_name + " (" + C.base_dir + ")" }));
    main.appendChild(h("p", { class: "note", text: "Per metric: the mean over shared scenes of (this run − baseline), each scene's mean over its rollouts, with a paired bootstrap 95 % interval over scenes. Red: the interval lies on the worse side." }));
    const W = 300;
    const rows = C.rows.map(function (r) {
      const m = Math.max(Math.abs(r.lo || 0), Math.abs(r.hi || 0), 1e-9) * 1.1;
      const x = function (v) { return W / 2 + (W / 2 - 4) * v / m; };
      const svg = s("svg", { viewBox: "0 0 " + W + " 18", class: "diff", role: "img", "aria-label": "difference " + num(r.diff) });
      svg.appendChild(s("line", { x1: W / 2, x2: W / 2, y1: 0, y2: 18, class: "zero" }));
      if (r.lo != null) svg.appendChild(s("line", { x1: x(r.lo), x2: x(r.hi), y1: 9, y2: 9, class: r.regressed ? "ci bad" : "ci" }));
      if (r.diff != null) svg.appendChild(s("circle", { cx: x(r.diff), cy: 9, r: 3.5, class: r.regressed ? "event" : "dot" }));
      return [r.metric, r.better, num(r.base), num(r.current), num(r.diff), num(r.lo) + " … " + num(r.hi), svg, r.regressed ? "worse" : ""];
    });
    main.appendChild(h("div", { class: "scroll" }, [table(["metric", "better", "baseline", "this run", "difference", "95 % interval", "interval around 0", ""], rows, { id: "compare-table" })]));
    main.appendChild(h("h2", { text: "Scenes that got worse" }));
    if (!C.worse.length) { main.appendChild(h("p", { text: "None." })); return; }
    main.appendChild(h("p", { class: "note", text: "The same scene in both runs, for the scenes that got worse on the regressed metrics and the safety rates first; then up to five scenes per metric." }));
    const both = C.worse.filter(function (w) { return w.video && w.base_video; });
    const seen = {};
    both.filter(function (w) { if (seen[w.scene]) return false; seen[w.scene] = 1; return true; }).slice(0, 6).forEach(function (w) {
      main.appendChild(h("figure", { class: "pair" }, [
        h("figcaption", { text: w.scene + " — " + w.metric + ": " + num(w.base) + " → " + num(w.current) }),
        h("div", { class: "two" }, [
          h("div", {}, [h("p", { text: "baseline" }), h("video", { controls: "", preload: "metadata", src: w.base_video, width: "320" })]),
          h("div", {}, [h("p", { text: "this run" }), h("video", { controls: "", preload: "metadata", src: w.video, width: "320" })]),
        ]),
      ]));
    });
    main.appendChild(h("div", { class: "scroll" }, [table(["metric", "scene", "baseline", "this run", "worse by"], C.worse.map(function (w) { return [w.metric + (w.regressed ? " (regressed)" : ""), link({ view: "rollouts", q: w.scene }, w.scene), num(w.base), num(w.current), num(w.worse_by)]; }))]));
  }

  function render() {
    const v = state().view;
    ({ overview: overview, scenes: scenes, rollouts: rollouts, rollout: rollout, compare: D.compare ? comparison : overview }[v] || overview)();
    document.body.dataset.view = v;
    document.body.dataset.ready = "1";
  }
  window.addEventListener("hashchange", render);
  render();
})();
