// chaos-trace HTML report: draws the data block (#report-data) as a timeline on a canvas, the
// failures with their explanations, and a filterable table of events kept in sync with the
// timeline. Every string from the trace reaches the page through textContent or fillText only.
"use strict";

(function () {
  // errors of this page (script errors, console.error) are shown on it and read by the tests
  const errorBox = document.getElementById("errors");
  function showError(msg) {
    errorBox.hidden = false;
    errorBox.textContent += msg + "\n";
  }
  window.addEventListener("error", (e) => showError("error: " + e.message));
  window.addEventListener("unhandledrejection", (e) => showError("error: " + e.reason));
  const consoleError = console.error.bind(console);
  console.error = (...args) => {
    showError("console: " + args.join(" "));
    consoleError(...args);
  };

  const D = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  const COLORS = { accept: "#2e9d5b", fail: "#d64545", inconclusive: "#d9a21b", none: "#9aa0a6" };
  const FAULT = "#8a5cf5";
  const GUTTER = 220;
  const origin = D.origin;

  // ---------- time ----------
  const rel = (t) => (t - origin) / 1e9; // seconds from the start of the recording
  function wall(t) {
    const d = new Date(t / 1e6);
    const p = (n, w) => String(n).padStart(w, "0");
    return p(d.getUTCHours(), 2) + ":" + p(d.getUTCMinutes(), 2) + ":" + p(d.getUTCSeconds(), 2) +
      "." + p(d.getUTCMilliseconds(), 3);
  }
  function offset(s) {
    const sign = s < 0 ? "-" : "+";
    s = Math.abs(s);
    return sign + (s >= 100 ? s.toFixed(1) : s.toFixed(3)) + "s";
  }
  const full = [rel(D.t0), rel(D.t1)];
  if (full[1] - full[0] < 1e-3) full[1] = full[0] + 1e-3;
  let view = [full[0], full[1]];

  // ---------- header ----------
  document.title = D.title + " · chaos-trace report";
  $("title").textContent = D.trace;
  const badge = $("verdict");
  badge.textContent = D.verdict;
  badge.classList.add(D.verdict);
  const sum = [
    "run " + D.run_id,
    D.events.toLocaleString("en") + " events",
    "from " + new Date(D.t0 / 1e6).toISOString().replace("T", " ").replace("Z", " UTC"),
    "length " + (rel(D.t1) - rel(D.t0)).toFixed(1) + " s",
    D.lanes.length - 1 + " services",
    D.faults.length + " faults",
    D.bands.length < D.bands_total
      ? D.bands.length + " of " + D.bands_total + " monitor instances drawn"
      : D.bands.length + " monitor instances",
  ];
  if (D.table_partial) sum.push("table: " + D.table.length.toLocaleString("en") + " events (around decisions and faults)");
  $("summary").textContent = sum.join(" · ");
  $("text-report-body").textContent = D.text_report;

  // ---------- layout ----------
  // rows from top to bottom: axis, recorder/faults lane, monitor instances, each service with
  // its series, packet pairs
  const rows = [];
  let y = 0;
  function addRow(r, h) {
    r.y = y;
    r.h = h;
    rows.push(r);
    y += h;
    return r;
  }
  addRow({ type: "axis" }, 36);
  const laneRows = [];
  const seriesByLane = new Map();
  D.series.forEach((s) => {
    if (!seriesByLane.has(s.lane)) seriesByLane.set(s.lane, []);
    seriesByLane.get(s.lane).push(s);
  });
  // one row of steps per experiment in the recorder's lane, the faults under them
  const experiments = [...new Set(D.steps.map((s) => s.experiment))];
  function addLane(i) {
    const start = y;
    laneRows[i] = addRow({ type: "lane", lane: i, label: D.lanes[i] }, i === 0 ? 26 + 19 * Math.max(1, experiments.length) : 30);
    (seriesByLane.get(i) || []).forEach((s) => addRow({ type: "series", lane: i, series: s, label: s.name }, 22));
    laneRows[i].top = start;
    laneRows[i].bottom = y;
  }
  // the recorder's lane (steps, faults), then the monitors' states, then the services
  addLane(0);
  if (D.bands.length) {
    addRow({ type: "header", label: "monitor instances" }, 20);
    D.bands.forEach((b) => {
      // `experiment E step N` is shown as `N.`: the steps lane above names the experiment
      const step = /^experiment .* step (\d+)$/.exec(b.scope);
      const label = step ? step[1] + ". " + b.monitor : b.scope === b.monitor ? b.monitor : b.scope + ": " + b.monitor;
      addRow({ type: "band", band: b, label: b.key ? label + " [" + b.key + "]" : label }, 20);
    });
  }
  addRow({ type: "header", label: "services" }, 20);
  for (let i = 1; i < D.lanes.length; i++) addLane(i);
  const pairs = Object.keys(D.packets);
  if (pairs.length) {
    addRow({ type: "header", label: "packets per service pair" }, 20);
    pairs.forEach((p) => addRow({ type: "packets", key: p, label: p }, 16));
  }
  const totalH = y + 6;

  // ---------- canvas ----------
  const canvas = $("timeline");
  const ctx = canvas.getContext("2d");
  let W = 800;
  let hits = []; // {x0,x1,y0,y1,tip,seq,t}
  let cursor = null; // selected time (trace ns)
  let selectedSeq = null;
  let failureIdx = -1;
  const failTimes = D.failures.map((f) => f.at);

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    W = canvas.parentElement.clientWidth || 800;
    canvas.style.height = totalH + "px";
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(totalH * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    draw();
  }
  const X = (s) => GUTTER + ((s - view[0]) / (view[1] - view[0])) * (W - GUTTER - 8);
  const Xt = (t) => X(rel(t));
  const S = (x) => view[0] + ((x - GUTTER) / (W - GUTTER - 8)) * (view[1] - view[0]);
  const bucketS = D.bucket_ns / 1e9;
  const bucketX = (b) => X(rel(D.t0) + b * bucketS);

  function hue(str) {
    let h = 0;
    for (let i = 0; i < str.length; i++) h = (h * 31 + str.charCodeAt(i)) >>> 0;
    return h % 360;
  }
  function clipText(text, maxW) {
    if (ctx.measureText(text).width <= maxW) return text;
    let lo = 0, hi = text.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ctx.measureText(text.slice(0, mid) + "…").width <= maxW) lo = mid; else hi = mid - 1;
    }
    return lo > 0 ? text.slice(0, lo) + "…" : "";
  }
  function hit(x0, x1, y0, y1, tip, seq, t) {
    hits.push({ x0: Math.min(x0, x1) - 2, x1: Math.max(x0, x1) + 2, y0, y1, tip, seq, t });
  }

  function niceStep(span, px) {
    const target = span / Math.max(2, px / 110);
    const steps = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02,
      0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];
    return steps.find((s) => s >= target) || 86400;
  }

  function drawAxis(r) {
    const step = niceStep(view[1] - view[0], W - GUTTER);
    ctx.fillStyle = "#656d76";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText("offset · UTC", 8, r.y + 4);
    for (let s = Math.ceil(view[0] / step) * step; s <= view[1]; s += step) {
      const x = X(s);
      ctx.strokeStyle = "#eaeef2";
      ctx.beginPath();
      ctx.moveTo(x + 0.5, r.y + 30);
      ctx.lineTo(x + 0.5, totalH);
      ctx.stroke();
      ctx.fillStyle = "#1f2328";
      const digits = step < 1 ? Math.min(6, Math.ceil(-Math.log10(step))) : 0;
      ctx.fillText("+" + s.toFixed(digits) + "s", x + 3, r.y + 3);
      ctx.fillStyle = "#656d76";
      ctx.fillText(wall(origin + s * 1e9), x + 3, r.y + 17);
    }
  }

  function drawLane(r) {
    const i = r.lane;
    ctx.fillStyle = i % 2 ? "#fbfcfd" : "#fff";
    ctx.fillRect(GUTTER, r.y, W - GUTTER, r.h);
    // every event, faint, per bucket
    const all = D.all_buckets[i] || [];
    let max = 1;
    all.forEach((c) => (max = Math.max(max, c[1])));
    ctx.fillStyle = "rgba(100,110,120,0.10)";
    all.forEach(([b, c]) => {
      const x0 = bucketX(b), x1 = bucketX(b + 1);
      if (x1 < GUTTER || x0 > W) return;
      const h = Math.max(1, (Math.log1p(c) / Math.log1p(max)) * (r.h - 4));
      ctx.fillRect(x0, r.y + r.h - h, Math.max(1, x1 - x0), h);
    });
    // log lines: individual ticks when few, buckets otherwise
    const ticks = D.log_ticks[i];
    const logB = D.log_buckets[i] || [];
    const visibleBuckets = (W - GUTTER) * bucketS / (view[1] - view[0]);
    if (ticks && ticks.length) {
      ctx.strokeStyle = "rgba(31,111,235,0.75)";
      ctx.beginPath();
      ticks.forEach(([t, seq]) => {
        const x = Xt(t);
        if (x < GUTTER || x > W) return;
        ctx.moveTo(x + 0.5, r.y + r.h - 11);
        ctx.lineTo(x + 0.5, r.y + r.h - 2);
        hit(x, x, r.y + r.h - 12, r.y + r.h, "log line · " + D.lanes[i] + " · seq " + seq, seq, t);
      });
      ctx.stroke();
    } else if (logB.length) {
      let lmax = 1;
      logB.forEach((c) => (lmax = Math.max(lmax, c[1])));
      logB.forEach(([b, c]) => {
        const x0 = bucketX(b), x1 = bucketX(b + 1);
        if (x1 < GUTTER || x0 > W) return;
        ctx.fillStyle = "rgba(31,111,235," + (0.25 + 0.75 * c / lmax).toFixed(2) + ")";
        ctx.fillRect(x0, r.y + r.h - 11, Math.max(1, x1 - x0), 9);
        hit(x0, x1, r.y + r.h - 12, r.y + r.h, c + " log lines · " + D.lanes[i], null, D.t0 + b * D.bucket_ns);
      });
      void visibleBuckets;
    }
    // Docker markers
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "top";
    D.markers.forEach((m) => {
      if (m.lane !== i) return;
      const x = Xt(m.t);
      if (x < GUTTER - 4 || x > W + 4) return;
      const bad = /^(die|kill|oom|pause|stop|destroy)/.test(m.kind);
      ctx.fillStyle = bad ? "#b42318" : "#475467";
      ctx.beginPath();
      ctx.moveTo(x, r.y + 2);
      ctx.lineTo(x - 4, r.y + 9);
      ctx.lineTo(x + 4, r.y + 9);
      ctx.closePath();
      ctx.fill();
      hit(x - 4, x + 4, r.y, r.y + 12, "docker " + m.kind + " · " + D.lanes[i] + " · " + wall(m.t) + " · seq " + m.seq, m.seq, m.t);
    });
    (D.marker_buckets[i] || []).forEach(([b, c]) => {
      const x0 = bucketX(b);
      ctx.fillStyle = "#475467";
      ctx.fillRect(x0, r.y + 2, Math.max(1, bucketX(b + 1) - x0), 6);
      hit(x0, bucketX(b + 1), r.y, r.y + 10, c + " docker events", null, D.t0 + b * D.bucket_ns);
    });
    if (i === 0) drawRecorderLane(r);
  }

  function drawRecorderLane(r) {
    // experiment steps on top, faults below
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    D.steps.forEach((s) => {
      if (s.start == null) return;
      const end = s.end == null ? D.judged_until : s.end;
      const x0 = Xt(s.start), x1 = Math.max(Xt(end), x0 + 2);
      if (x1 < GUTTER || x0 > W) return;
      const c = COLORS[s.verdict || "none"];
      const sy = r.y + 3 + 19 * experiments.indexOf(s.experiment);
      ctx.fillStyle = c + "33";
      ctx.fillRect(x0, sy, x1 - x0, 17);
      ctx.fillStyle = c;
      ctx.fillRect(x0, sy, 2, 17);
      ctx.fillStyle = "#1f2328";
      const label = (s.index + 1) + ". " + s.text;
      ctx.fillText(clipText(label, x1 - x0 - 6), x0 + 5, sy + 9);
      hit(x0, x1, sy, sy + 17, "step " + (s.index + 1) + " of " + s.experiment + " (" + s.kind + "): " + s.text +
        "\nverdict: " + (s.verdict || "not reached") + (s.reason ? "\n" + s.reason : "") +
        "\n" + offset(rel(s.start)) + " → " + offset(rel(end)), null, s.start);
    });
    const fy = r.y + r.h - 22;
    D.faults.forEach((f) => {
      const x0 = Xt(f.start);
      const x1 = f.end == null ? Xt(D.t1) : Math.max(Xt(f.end), x0 + 3);
      if (x1 < GUTTER || x0 > W) return;
      ctx.fillStyle = f.phase === "failed" ? COLORS.fail : FAULT;
      ctx.fillRect(x0, fy, x1 - x0, 17);
      ctx.fillStyle = "#fff";
      ctx.fillText(clipText(f.label, x1 - x0 - 6), x0 + 4, fy + 9);
      hit(x0, x1, fy, fy + 17, "fault " + f.label + "\n" + f.phase + " at " + offset(rel(f.start)) +
        (f.end == null ? ", still active at the end" : f.end === f.start ? "" : ", until " + offset(rel(f.end)) +
          (f.closed_by ? " (" + f.closed_by + ")" : "")), f.seq, f.start);
    });
  }

  function drawFaultOverlays() {
    D.faults.forEach((f) => {
      const x0 = Xt(f.start);
      const x1 = f.end == null ? Xt(D.t1) : Math.max(Xt(f.end), x0 + 2);
      if (x1 < GUTTER || x0 > W) return;
      f.lanes.forEach((l) => {
        if (l === 0) return;
        const r = laneRows[l];
        ctx.fillStyle = "rgba(138,92,245,0.13)";
        ctx.fillRect(Math.max(x0, GUTTER), r.top, Math.min(x1, W) - Math.max(x0, GUTTER), r.bottom - r.top);
        ctx.fillStyle = FAULT;
        ctx.fillRect(Math.max(x0, GUTTER), r.top, Math.min(x1, W) - Math.max(x0, GUTTER), 2);
      });
    });
  }

  function drawSeries(r) {
    const s = r.series;
    let lo = Infinity, hi = -Infinity;
    s.points.forEach((p) => { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[2]); });
    if (hi === lo) { hi += 1; lo -= 1; }
    const Y = (v) => r.y + r.h - 3 - ((v - lo) / (hi - lo)) * (r.h - 8);
    ctx.fillStyle = "rgba(46,157,91,0.16)";
    s.points.forEach(([b, mn, mx]) => {
      const x0 = bucketX(b), x1 = bucketX(b + 1);
      if (x1 < GUTTER || x0 > W) return;
      ctx.fillRect(x0, Y(mx), Math.max(1, x1 - x0), Math.max(1, Y(mn) - Y(mx)));
    });
    ctx.strokeStyle = "#2e7d52";
    ctx.beginPath();
    let first = true;
    s.points.forEach(([b, , , last]) => {
      const x = bucketX(b + 0.5);
      if (first) ctx.moveTo(x, Y(last)); else ctx.lineTo(x, Y(last));
      first = false;
    });
    ctx.stroke();
    ctx.fillStyle = "#656d76";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText(fmtNum(hi), GUTTER + 3, r.y + 1);
    // hover: the value under the mouse is looked up in onMove
    hits.push({ x0: GUTTER, x1: W, y0: r.y, y1: r.y + r.h, series: s });
  }
  function fmtNum(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(2);
  }

  function drawPackets(r) {
    const b = D.packets[r.key];
    let max = 1;
    b.forEach((c) => (max = Math.max(max, c[1])));
    b.forEach(([k, c]) => {
      const x0 = bucketX(k), x1 = bucketX(k + 1);
      if (x1 < GUTTER || x0 > W) return;
      ctx.fillStyle = "rgba(208,120,20," + (0.15 + 0.85 * c / max).toFixed(2) + ")";
      ctx.fillRect(x0, r.y + 2, Math.max(1, x1 - x0), r.h - 4);
      hit(x0, x1, r.y, r.y + r.h, r.key + ": " + c + " packets in " + (bucketS * 1000).toFixed(1) + " ms (" +
        (c / bucketS).toFixed(0) + "/s)", null, D.t0 + k * D.bucket_ns);
    });
  }

  function drawBand(r) {
    const b = r.band;
    const c = COLORS[b.verdict || "none"];
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    b.states.forEach(([name, from, to], k) => {
      const end = to == null ? D.judged_until : to;
      const x0 = Xt(from), x1 = Math.max(Xt(end), x0 + 1);
      if (x1 < GUTTER || x0 > W) return;
      const last = k === b.states.length - 1 && b.verdict;
      ctx.fillStyle = "hsl(" + hue(name) + ",45%," + (last ? "78%" : "88%") + ")";
      ctx.fillRect(x0, r.y + 2, x1 - x0, r.h - 4);
      ctx.fillStyle = c;
      ctx.fillRect(x0, r.y + r.h - 4, x1 - x0, 2);
      ctx.fillStyle = "#1f2328";
      ctx.fillText(clipText(name, x1 - x0 - 4), Math.max(x0, GUTTER) + 2, r.y + r.h / 2);
      hit(x0, x1, r.y, r.y + r.h, b.scope + "\n" + b.monitor + (b.key ? " [" + b.key + "]" : "") + "\nstate " + name + " from " +
        offset(rel(from)) + (to == null ? " to the end" : " to " + offset(rel(end))) +
        (k === b.states.length - 1 && b.verdict ? "\n" + b.verdict + " at " + offset(rel(b.decided)) : ""), null, from);
    });
    if (b.decided != null && b.verdict && b.verdict !== "accept") {
      const x = Xt(b.decided);
      ctx.fillStyle = c;
      ctx.fillRect(x - 1, r.y, 3, r.h);
    }
  }

  function drawGutter() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, GUTTER, totalH);
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    rows.forEach((r) => {
      if (r.type === "axis") return;
      if (r.type === "lane") {
        ctx.fillStyle = "#1f2328";
        ctx.font = "600 12px system-ui, sans-serif";
      } else if (r.type === "header") {
        ctx.fillStyle = "#656d76";
        ctx.font = "600 11px system-ui, sans-serif";
      } else {
        ctx.fillStyle = r.type === "band" ? COLORS[r.band.verdict || "none"] : "#656d76";
        ctx.font = "11px system-ui, sans-serif";
      }
      const indent = r.type === "series" ? 16 : 8;
      ctx.fillText(clipText(r.label, GUTTER - indent - 6), indent, r.y + Math.min(r.h, 30) / 2);
      ctx.strokeStyle = "#eaeef2";
      ctx.beginPath();
      ctx.moveTo(0, r.y + r.h + 0.5);
      ctx.lineTo(W, r.y + r.h + 0.5);
      ctx.stroke();
    });
    ctx.strokeStyle = "#d0d7de";
    ctx.beginPath();
    ctx.moveTo(GUTTER + 0.5, 0);
    ctx.lineTo(GUTTER + 0.5, totalH);
    ctx.stroke();
  }

  function drawFailureMarkers() {
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "top";
    D.failures.forEach((f, k) => {
      if (f.at == null) return;
      const x = Xt(f.at);
      if (x < GUTTER || x > W) return;
      const c = COLORS[f.verdict];
      ctx.strokeStyle = c;
      ctx.lineWidth = k === failureIdx ? 2.5 : 1.2;
      ctx.setLineDash(k === failureIdx ? [] : [4, 3]);
      ctx.beginPath();
      ctx.moveTo(x, 30);
      ctx.lineTo(x, totalH);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.lineWidth = 1;
      ctx.fillStyle = c;
      ctx.fillRect(x - 9, 28, 18, 12);
      ctx.fillStyle = "#fff";
      ctx.fillText(String(k + 1), x - 3, 28);
      if (f.lane != null && laneRows[f.lane]) {
        const r = laneRows[f.lane];
        ctx.beginPath();
        ctx.arc(x, r.y + r.h / 2, 5, 0, 2 * Math.PI);
        ctx.fillStyle = c;
        ctx.fill();
      }
      hit(x - 9, x + 9, 26, 42, "failure " + (k + 1) + ": " + f.title + "\n" + (f.lines[0] || ""), f.seq, f.at);
      hits[hits.length - 1].failure = k;
    });
  }

  function draw() {
    hits = [];
    ctx.clearRect(0, 0, W, totalH);
    rows.forEach((r) => {
      if (r.type === "axis") drawAxis(r);
      else if (r.type === "lane") drawLane(r);
      else if (r.type === "series") drawSeries(r);
      else if (r.type === "packets") drawPackets(r);
      else if (r.type === "band") drawBand(r);
    });
    drawFaultOverlays();
    if (cursor != null) {
      const x = Xt(cursor);
      ctx.strokeStyle = "#1f6feb";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(x, 30);
      ctx.lineTo(x, totalH);
      ctx.stroke();
      ctx.lineWidth = 1;
    }
    drawFailureMarkers();
    drawGutter();
    $("range").textContent = offset(view[0]) + " … " + offset(view[1]) + "  (" + wall(origin + view[0] * 1e9) +
      " – " + wall(origin + view[1] * 1e9) + " UTC, " + (view[1] - view[0]).toFixed(3) + " s)";
  }

  // ---------- zoom and pan ----------
  let redrawPending = false;
  function setView(a, b) {
    const minSpan = 1e-6;
    let span = Math.max(minSpan, b - a);
    const fullSpan = full[1] - full[0];
    const pad = fullSpan * 0.05;
    if (span > fullSpan + 2 * pad) span = fullSpan + 2 * pad;
    a = Math.max(full[0] - pad, Math.min(a, full[1] + pad - span));
    view = [a, a + span];
    if (!redrawPending) {
      redrawPending = true;
      requestAnimationFrame(() => {
        redrawPending = false;
        draw();
        refreshTable();
      });
    }
  }
  function zoom(factor, atS) {
    const c = atS == null ? (view[0] + view[1]) / 2 : atS;
    setView(c - (c - view[0]) * factor, c + (view[1] - c) * factor);
  }
  function pan(frac) {
    const d = (view[1] - view[0]) * frac;
    setView(view[0] + d, view[1] + d);
  }
  function focusOn(t, span) {
    const s = rel(t);
    const w = span || Math.max((full[1] - full[0]) / 8, 1e-3);
    setView(s - w / 2, s + w / 2);
  }
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      pan((e.deltaX || e.deltaY) / 800);
    } else {
      zoom(Math.exp(e.deltaY * 0.0015), x > GUTTER ? S(x) : null);
    }
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("mousedown", (e) => {
    drag = { x: e.clientX, v: view.slice(), moved: false };
    canvas.classList.add("dragging");
    canvas.focus();
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x;
    if (Math.abs(dx) > 3) drag.moved = true;
    const ds = (dx / (W - GUTTER - 8)) * (drag.v[1] - drag.v[0]);
    setView(drag.v[0] - ds, drag.v[1] - ds);
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null;
    canvas.classList.remove("dragging");
    if (!moved) onClick(e);
  });
  canvas.addEventListener("dblclick", (e) => {
    const rect = canvas.getBoundingClientRect();
    zoom(0.4, S(e.clientX - rect.left));
  });
  canvas.addEventListener("keydown", (e) => {
    const k = e.key;
    if (k === "+" || k === "=") zoom(0.6);
    else if (k === "-" || k === "_") zoom(1 / 0.6);
    else if (k === "ArrowLeft") pan(-0.15);
    else if (k === "ArrowRight") pan(0.15);
    else if (k === "0" || k === "Home") setView(full[0], full[1]);
    else if (k === "f") selectFailure(0);
    else if (k === "n") selectFailure(Math.min(D.failures.length - 1, failureIdx + 1));
    else if (k === "p") selectFailure(Math.max(0, failureIdx - 1));
    else return;
    e.preventDefault();
  });
  $("zoom-in").onclick = () => zoom(0.6);
  $("zoom-out").onclick = () => zoom(1 / 0.6);
  $("zoom-reset").onclick = () => setView(full[0], full[1]);
  $("goto-failure").onclick = () => selectFailure(0);
  $("goto-failure").disabled = D.failures.length === 0;

  // ---------- hover and click ----------
  const tip = $("tooltip");
  function hitAt(x, y) {
    for (let k = hits.length - 1; k >= 0; k--) {
      const h = hits[k];
      if (x >= h.x0 && x <= h.x1 && y >= h.y0 && y <= h.y1) return h;
    }
    return null;
  }
  function seriesTip(s, x) {
    const b = Math.floor((S(x) - rel(D.t0)) / bucketS);
    let best = null;
    s.points.forEach((p) => { if (best == null || Math.abs(p[0] - b) < Math.abs(best[0] - b)) best = p; });
    if (!best) return s.name;
    return D.lanes[s.lane] + " · " + s.name + "\nlast " + fmtNum(best[3]) + " (min " + fmtNum(best[1]) + ", max " +
      fmtNum(best[2]) + ") at " + offset(rel(D.t0) + best[0] * bucketS);
  }
  canvas.addEventListener("mousemove", (e) => {
    if (drag) { tip.hidden = true; return; }
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left, yy = e.clientY - rect.top;
    const h = hitAt(x, yy);
    if (!h || x < GUTTER) { tip.hidden = true; return; }
    tip.textContent = h.series ? seriesTip(h.series, x) : h.tip;
    tip.hidden = false;
    const wrap = canvas.parentElement;
    const left = Math.min(x + 14, W - 300);
    tip.style.left = left + "px";
    tip.style.top = yy + 14 + "px";
    void wrap;
  });
  canvas.addEventListener("mouseleave", () => (tip.hidden = true));
  function onClick(e) {
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left, yy = e.clientY - rect.top;
    if (x < GUTTER) return;
    const h = hitAt(x, yy);
    if (h && h.failure != null) {
      selectFailure(h.failure);
      return;
    }
    if (h && h.seq != null) {
      selectSeq(h.seq, true);
      return;
    }
    const t = origin + S(x) * 1e9;
    cursor = h && h.t != null ? h.t : t;
    draw();
    scrollTableTo(cursor);
  }

  // ---------- failures ----------
  const fl = $("failure-list");
  if (D.failures.length) {
    $("failures").hidden = false;
    D.failures.forEach((f, k) => {
      const li = document.createElement("li");
      li.className = f.verdict;
      li.dataset.seq = f.seq == null ? "" : String(f.seq);
      const tag = document.createElement("strong");
      tag.textContent = f.verdict === "fail" ? "FAIL " : "INCONCLUSIVE ";
      tag.style.color = COLORS[f.verdict];
      li.appendChild(tag);
      li.appendChild(document.createTextNode(f.title + (f.at != null ? " · " + offset(rel(f.at)) : "")));
      li.onclick = () => selectFailure(k);
      fl.appendChild(li);
    });
  }
  function selectFailure(k) {
    const f = D.failures[k];
    if (!f) return;
    failureIdx = k;
    [...fl.children].forEach((li, j) => li.classList.toggle("selected", j === k));
    $("expl-title").textContent = f.title;
    $("expl-text").textContent = f.lines.join("\n");
    document.body.dataset.failure = String(k + 1);
    if (f.at != null) {
      // enough around it to see what led there: 30 s, or a twentieth of a long trace
      const span = full[1] - full[0];
      const w = Math.max(span / 20, 30);
      if (w >= span * 0.8) setView(full[0], full[1]);
      else focusOn(f.at, w);
      cursor = f.at;
    }
    if (f.seq != null) selectSeq(f.seq, false);
    else draw();
  }

  // ---------- events table ----------
  const decisive = new Set();
  D.failures.forEach((f) => { if (f.seq != null) decisive.add(f.seq); });
  const bySeq = new Map();
  D.table.forEach((r, k) => bySeq.set(r.seq, k));
  function fillSelect(sel, values, all) {
    const o = document.createElement("option");
    o.value = "";
    o.textContent = all;
    sel.appendChild(o);
    [...values].sort().forEach((v) => {
      const op = document.createElement("option");
      op.value = v;
      op.textContent = v;
      sel.appendChild(op);
    });
  }
  fillSelect($("f-service"), new Set(D.table.map((r) => r.svc || "-")), "all services");
  fillSelect($("f-source"), new Set(D.table.map((r) => r.src)), "all sources");
  fillSelect($("f-kind"), new Set(D.table.map((r) => r.kind)), "all kinds");
  let filtered = D.table;
  const ROW = 22;
  const table = $("table");
  const spacer = $("table-spacer");
  const rowsBox = $("table-rows");
  function refreshTable() {
    const svc = $("f-service").value, src = $("f-source").value, kind = $("f-kind").value;
    const text = $("f-text").value;
    let re = null;
    $("f-text").classList.remove("bad");
    if (text) {
      try { re = new RegExp(text, "i"); } catch (err) { $("f-text").classList.add("bad"); }
    }
    const visibleOnly = $("f-visible").checked;
    const lo = origin + view[0] * 1e9, hi = origin + view[1] * 1e9;
    filtered = D.table.filter((r) =>
      (!svc || (r.svc || "-") === svc) && (!src || r.src === src) && (!kind || r.kind === kind) &&
      (!visibleOnly || (r.t >= lo && r.t <= hi)) &&
      (!re || re.test(r.msg || "") || re.test(r.data || "") || re.test(r.kind)));
    $("f-count").textContent = filtered.length.toLocaleString("en") + " of " + D.table.length.toLocaleString("en") +
      " events" + (D.table_partial ? " (the table holds the events around decisions, faults and the run's own events of this big trace)" : "");
    spacer.style.height = filtered.length * ROW + "px";
    // the selected event stays in sight when the range or the filters change
    const idx = selectedSeq == null ? -1 : filtered.findIndex((x) => x.seq === selectedSeq);
    if (idx >= 0) showIndex(idx);
    renderRows();
  }
  function showIndex(idx) {
    if (idx * ROW < table.scrollTop || idx * ROW > table.scrollTop + table.clientHeight - ROW) {
      table.scrollTop = Math.max(0, idx * ROW - table.clientHeight / 3);
    }
  }
  function cell(text) {
    const s = document.createElement("span");
    s.textContent = text;
    return s;
  }
  function renderRows() {
    const first = Math.max(0, Math.floor(table.scrollTop / ROW) - 5);
    const last = Math.min(filtered.length, first + Math.ceil(table.clientHeight / ROW) + 10);
    rowsBox.style.top = first * ROW + "px";
    rowsBox.replaceChildren();
    for (let k = first; k < last; k++) {
      const r = filtered[k];
      const div = document.createElement("div");
      div.className = "row" + (r.seq === selectedSeq ? " selected" : "") + (decisive.has(r.seq) ? " decisive" : "");
      div.dataset.seq = String(r.seq);
      div.append(cell(offset(rel(r.t))), cell(wall(r.t)), cell(String(r.seq)), cell(r.src), cell(r.svc || "-"),
        cell(r.kind), cell(r.msg || r.data || ""));
      div.onclick = () => selectSeq(r.seq, true);
      rowsBox.appendChild(div);
    }
  }
  table.addEventListener("scroll", renderRows);
  ["f-service", "f-source", "f-kind", "f-visible"].forEach((id) => $(id).addEventListener("change", refreshTable));
  $("f-text").addEventListener("input", refreshTable);
  table.addEventListener("keydown", (e) => {
    const k = filtered.findIndex((r) => r.seq === selectedSeq);
    if (e.key === "ArrowDown" && k + 1 < filtered.length) selectSeq(filtered[k + 1].seq, false);
    else if (e.key === "ArrowUp" && k > 0) selectSeq(filtered[k - 1].seq, false);
    else return;
    e.preventDefault();
  });
  function scrollTableTo(t) {
    let lo = 0, hi = filtered.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (filtered[m].t < t) lo = m + 1; else hi = m; }
    table.scrollTop = Math.max(0, lo * ROW - table.clientHeight / 3);
    renderRows();
  }
  function selectSeq(seq, fromUser) {
    selectedSeq = seq;
    const k = bySeq.get(seq);
    const r = k == null ? null : D.table[k];
    const det = $("detail");
    if (r) {
      cursor = r.t;
      const s = rel(r.t);
      if (s < view[0] || s > view[1]) focusOn(r.t, view[1] - view[0]);
      det.hidden = false;
      $("detail-title").textContent = "seq " + r.seq + " · " + r.src + " · " + (r.svc || "-") + " · " + r.kind;
      let data = r.data;
      if (data) {
        try { data = JSON.stringify(JSON.parse(data), null, 2); } catch (err) { /* not JSON: as recorded */ }
      }
      $("detail-text").textContent = offset(rel(r.t)) + "  " + new Date(r.t / 1e6).toISOString() +
        "\nsource " + r.src + "  service " + (r.svc || "-") + "  kind " + r.kind +
        (r.msg != null ? "\n\nmessage:\n" + r.msg : "") + (data != null ? "\n\ndata:\n" + data : "");
      if (!filtered.some((x) => x.seq === seq)) refreshTable();
      const idx = filtered.findIndex((x) => x.seq === seq);
      if (idx >= 0) showIndex(idx);
    }
    renderRows();
    draw();
    void fromUser;
  }

  // ---------- start ----------
  // a link can carry the table's filters and a selected event:
  // report.html#service=left-a&source=log&kind=stdout&search=REGEX&all=1&seq=123
  function fromHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    const set = (id, v) => {
      const el = $(id);
      if (v != null && [...el.options].some((o) => o.value === v)) el.value = v;
    };
    set("f-service", h.get("service"));
    set("f-source", h.get("source"));
    set("f-kind", h.get("kind"));
    if (h.get("search") != null) $("f-text").value = h.get("search");
    if (h.get("all") === "1") $("f-visible").checked = false;
    return h.get("seq");
  }
  window.addEventListener("resize", resize);
  resize();
  const linked = fromHash();
  refreshTable();
  if (linked != null && bySeq.has(Number(linked))) selectSeq(Number(linked), false);
  else if (D.failures.length) selectFailure(0);
  // time from navigation to a drawn page (docs/performance.md quotes it)
  document.body.dataset.renderMs = String(Math.round(performance.now()));
  document.body.dataset.ready = "1";
})();
