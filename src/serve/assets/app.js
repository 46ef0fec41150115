// The matih status console: one page, two views, no build step and nothing fetched from elsewhere.
//   /                the fleet: counts by status, filters (in the URL), sortable and paged table,
//                    the phase-duration plot against the guide's ranges
//   /tenants/{slug}  a tenant: header, timeline of the last run, operations per phase, the failure
//                    and its rollback, outputs, drift, earlier runs; live over /ws/provisioning/{slug}
// Everything is built with DOM calls and textContent: no innerHTML, so no data is ever parsed as HTML.
// The bearer token, when serve has one, comes in the page's URL (?access_token=…) as before: API
// calls send it as a header, the page's own links carry it in the query, and the WebSocket a one-use
// ticket from POST /api/v1/ws-tickets.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("access_token");
  const auth = token ? { Authorization: "Bearer " + token } : {};
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  window.matihSeen = []; // every event received over the WebSocket (tests read it)
  window.matihTimings = {}; // render timings (tests read them)

  // ---- small helpers ----------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null && v !== false) e.setAttribute(k, v === true ? "" : v);
    for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }
  function fmtMs(ms) {
    if (ms == null) return "";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + " s";
    const m = Math.floor(ms / 60000), s = Math.round((ms % 60000) / 1000);
    return m + " min" + (s ? " " + s + " s" : "");
  }
  // A duration in at most five characters, for plot labels.
  function short(ms) {
    if (ms < 1000) return Math.round(ms) + "ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + "s";
    return (ms / 60000).toFixed(ms < 600000 ? 1 : 0) + "min";
  }
  function fmtShortTime(t) {
    if (!t) return "";
    const d = new Date(t);
    return isNaN(d) ? t : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
  }
  function fmtTime(t) {
    if (!t) return "";
    const d = new Date(t);
    return isNaN(d) ? t : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }
  function withToken(path) {
    if (!token) return path;
    return path + (path.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(token);
  }
  async function api(path) {
    const r = await fetch(path, { headers: auth });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.message || r.status + " " + r.statusText);
    return body;
  }
  function setConn(ok, text) {
    $("conn").textContent = text;
    $("conn").classList.toggle("down", !ok);
  }
  function badge(status, prefix) {
    return el("span", { class: "badge " + (prefix || "s-") + status, "data-role": "status" }, status.replace("_", " "));
  }
  function progressBar(states) {
    const bar = el("div", { class: "bar", "data-role": "bar", role: "img",
      "aria-label": states.filter((s) => s === "COMPLETED").length + " of 10 phases completed" });
    states.forEach((s, i) => bar.append(el("div", { class: "seg " + s, title: "phase " + (i + 1) + ": " + s })));
    return bar;
  }
  const PHASES = ["CREATE_NAMESPACE", "SETUP_DATABASE", "DEPLOY_CORE_SERVICES", "CONFIGURE_NETWORKING",
    "DEPLOY_DATA_SERVICES", "DEPLOY_INGRESS_CONTROLLER", "CREATE_DNS_ZONE", "CREATE_TENANT_INGRESS",
    "DEPLOY_MONITORING", "SETUP_OBSERVABILITY"];
  // The platform guide's expected duration per phase, seconds (as fleet::GUIDE_SECS on the server).
  const GUIDE = [[5, 30], [30, 120], [60, 300], [10, 30], [60, 300], [30, 120], [10, 60], [10, 30], [30, 60], [10, 30]];

  // ---- routing -------------------------------------------------------------------------------
  const m = location.pathname.match(/^\/tenants\/([a-z0-9-]+)\/?$/);
  function crumbs(items) {
    const ol = $("crumbs");
    ol.replaceChildren();
    items.forEach(([text, href], i) => {
      const li = el("li");
      if (href && i < items.length - 1) li.append(el("a", { href: withToken(href) }, text));
      else li.append(el("span", { "aria-current": "page" }, text));
      ol.append(li);
    });
  }
  $("home").setAttribute("href", withToken("/"));
  if (location.pathname === "/") fleetView();
  else if (m) tenantView(m[1]);
  else $("not-found").hidden = false;

  // ---- the fleet -----------------------------------------------------------------------------
  function fleetView() {
    $("fleet-view").hidden = false;
    crumbs([["Fleet", "/"]]);
    const t0 = performance.now();
    const keys = ["status", "tier", "region", "q", "sort", "order", "page", "pageSize"];
    const state = {};
    for (const k of keys) if (params.get(k)) state[k] = params.get(k);
    let last = null, inflight = 0, seq = 0, firstDone = false, filterStart = null;

    // The filters reflect the URL; changing one updates the URL (shareable) and the table.
    $("f-status").value = state.status || "";
    $("f-q").value = state.q || "";
    $("f-size").value = state.pageSize || "50";
    function urlQuery(extra) {
      const q = new URLSearchParams();
      for (const k of keys) if (state[k]) q.set(k, state[k]);
      if (extra) for (const [k, v] of Object.entries(extra)) q.set(k, v);
      return q.toString();
    }
    function setState(changes, resetPage) {
      Object.assign(state, changes);
      for (const k of keys) if (!state[k]) delete state[k];
      if (resetPage) delete state.page;
      const q = urlQuery();
      const tq = token ? (q ? q + "&" : "") + "access_token=" + encodeURIComponent(token) : q;
      history.replaceState(null, "", "/" + (tq ? "?" + tq : ""));
      filterStart = performance.now();
      load();
    }
    $("f-status").addEventListener("change", (e) => setState({ status: e.target.value }, true));
    $("f-tier").addEventListener("change", (e) => setState({ tier: e.target.value }, true));
    $("f-region").addEventListener("change", (e) => setState({ region: e.target.value }, true));
    $("f-size").addEventListener("change", (e) => setState({ pageSize: e.target.value }, true));
    let typing;
    $("f-q").addEventListener("input", (e) => {
      clearTimeout(typing);
      const v = e.target.value.trim();
      typing = setTimeout(() => setState({ q: v }, true), 120);
    });
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("f-clear").addEventListener("click", () => {
      for (const k of ["status", "tier", "region", "q"]) delete state[k];
      $("f-status").value = ""; $("f-tier").value = ""; $("f-region").value = ""; $("f-q").value = "";
      setState({}, true);
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "/" && document.activeElement.tagName !== "INPUT") { e.preventDefault(); $("f-q").focus(); }
    });
    $("p-prev").addEventListener("click", () => setState({ page: String(Math.max(1, (last ? last.page : 1) - 1)) }));
    $("p-next").addEventListener("click", () => setState({ page: String((last ? last.page : 1) + 1) }));
    // Sortable headers: a button in each (keyboard and screen readers), aria-sort on the header.
    for (const th of document.querySelectorAll("#tenants th[data-sort]")) {
      const key = th.dataset.sort;
      const b = el("button", { type: "button" }, th.textContent);
      th.replaceChildren(b);
      b.addEventListener("click", () => {
        const cur = state.sort || "slug";
        const desc = cur === key ? state.order !== "desc" : false;
        setState({ sort: key, order: desc ? "desc" : "" });
      });
    }

    function options(select, values, current) {
      const first = select.options[0];
      if (select.options.length - 1 === values.length && values.every((v, i) => select.options[i + 1].value === v)) {
        select.value = current || ""; return;
      }
      select.replaceChildren(first, ...values.map((v) => el("option", { value: v }, v)));
      select.value = current || "";
    }

    const COUNTS = [["ACTIVE", "Active"], ["PROVISIONING", "Provisioning"], ["FAILED", "Failed"], ["NEVER_APPLIED", "Never applied"]];
    function renderCounts(body) {
      const ul = $("counts");
      ul.replaceChildren();
      const total = Object.entries(body.counts).filter(([k]) => k !== "NEVER_APPLIED").reduce((n, [, v]) => n + v, 0);
      const item = (key, label, n, onClick, pressed) => {
        const b = el("button", { type: "button", class: "c-" + key, "aria-pressed": pressed ? "true" : "false", "data-count": key },
          el("span", { class: "n" }, String(n)), el("span", { class: "l" }, label));
        b.addEventListener("click", onClick);
        ul.append(el("li", {}, b));
      };
      item("all", "All tenants", total, () => { $("f-status").value = ""; setState({ status: "" }, true); }, !state.status);
      for (const [k, label] of COUNTS) {
        item(k, label, body.counts[k] || 0, () => {
          const v = state.status === k ? "" : k;
          $("f-status").value = v; setState({ status: v }, true);
        }, state.status === k || (k === "NEVER_APPLIED" && state.status === "PENDING"));
      }
      if (body.drift && Object.keys(body.drift).length) {
        ul.append(el("li", {}, el("div", { class: "count c-drifted", "data-count": "drifted", title: "from the last drift report" },
          el("span", { class: "n" }, String(body.drift.drifted || 0)), el("span", { class: "l" }, "Drifted (last report)"))));
      }
    }

    function renderTable(body) {
      const tb = $("tenants").tBodies[0];
      const rows = body.tenants.map((t) => {
        const tr = el("tr", { id: "tenant-" + t.slug, "data-status": t.status });
        const name = el("td", {}, el("a", { class: "slug", href: withToken("/tenants/" + encodeURIComponent(t.slug)) }, t.slug),
          el("div", { class: "id" }, t.tenantId));
        const st = el("td", {}, badge(t.status));
        if (t.provisioningError) st.append(el("div", { class: "err", title: t.provisioningError }, t.provisioningError.length > 140 ? t.provisioningError.slice(0, 140) + "…" : t.provisioningError));
        const done = t.phases.filter((s) => s === "COMPLETED").length;
        const phase = t.currentPhase ? "phase " + t.currentPhase + "/10 · " + (t.currentPhaseName || "") : done + "/10 completed";
        const prog = el("td", {}, progressBar(t.phases), el("div", { class: "phase-label" }, phase));
        const drift = el("td");
        if (t.drift) drift.append(el("span", { class: "badge d-" + t.drift.status, "data-role": "drift" },
          t.drift.status === "drifted" ? t.drift.findings + " drifted" : t.drift.status.replace("_", " ")));
        tr.append(name, st, el("td", {}, t.tier || "—"), el("td", {}, t.region || "—"), prog,
          el("td", { class: "num" }, String(t.resources)), el("td", { class: "num" }, t.durationMs ? fmtMs(t.durationMs) : "—"),
          el("td", { class: "muted nowrap", title: t.provisioningCompletedAt || "" }, fmtShortTime(t.provisioningCompletedAt) || "—"), drift);
        return tr;
      });
      tb.replaceChildren(...rows);
      for (const th of document.querySelectorAll("#tenants th[data-sort]")) {
        const on = (state.sort || "slug") === th.dataset.sort;
        th.setAttribute("aria-sort", on ? (state.order === "desc" ? "descending" : "ascending") : "none");
      }
      const from = body.total ? (body.page - 1) * body.pageSize + 1 : 0;
      const to = Math.min(body.total, body.page * body.pageSize);
      $("p-info").textContent = body.total ? `${from}–${to} of ${body.total} tenants · page ${body.page} of ${body.pages}` : "no tenant matches";
      $("tenants-caption").textContent = "Tenants " + $("p-info").textContent;
      $("p-prev").disabled = body.page <= 1;
      $("p-next").disabled = body.page >= body.pages;
      const any = Object.values(body.counts).some((n) => n > 0);
      $("empty").hidden = body.tenants.length > 0;
      $("empty").textContent = any ? "No tenant matches these filters." : "No tenants in the state store yet.";
    }

    // The tenants failing now, newest first, with why: what an operator looks at first.
    function renderFailing(f) {
      const box = $("failing");
      box.hidden = f.total === 0;
      if (!f.total) return;
      $("failing-h").textContent = f.total === 1 ? "1 tenant is failing" : f.total + " tenants are failing";
      $("failing-list").replaceChildren(...f.tenants.map((t) => el("li", {},
        el("a", { class: "slug", href: withToken("/tenants/" + encodeURIComponent(t.slug)) }, t.slug),
        el("span", { class: "muted" }, " · " + (t.tier || "") + " · " + (t.region || "") + " · " + fmtTime(t.updatedAt)),
        el("div", { class: "err" }, t.provisioningError || "no error recorded"))));
      $("failing-all").hidden = f.total <= f.tenants.length && state.status === "FAILED";
    }
    $("failing-all").addEventListener("click", () => { $("f-status").value = "FAILED"; setState({ status: "FAILED" }, true); });

    async function load() {
      const my = ++seq;
      inflight++;
      try {
        const q = urlQuery({ pageSize: state.pageSize || "50" });
        const [body, failing, dur] = await Promise.all([
          api("/api/v1/tenants?" + q),
          api("/api/v1/tenants?status=FAILED&sort=-updated&pageSize=5"),
          api("/api/v1/phases/durations?" + new URLSearchParams(Object.entries(state).filter(([k]) => ["status", "tier", "region", "q"].includes(k))).toString()),
        ]);
        if (my !== seq) return; // a newer request is on its way
        last = body;
        const r0 = performance.now();
        options($("f-tier"), body.tiers, state.tier);
        options($("f-region"), body.regions, state.region);
        renderCounts(body);
        renderTable(body);
        renderFailing(failing);
        renderDurations(dur);
        const now = performance.now();
        window.matihTimings.lastRenderMs = now - r0; // building the page from the answers, in the browser
        if (!firstDone) { firstDone = true; window.matihTimings.firstRender = now - t0; window.matihTimings.firstRenderSinceNavigation = now; }
        if (filterStart != null) { window.matihTimings.filter = now - filterStart; filterStart = null; }
        window.matihTimings.renders = (window.matihTimings.renders || 0) + 1;
        document.body.dataset.ready = "1";
        setConn(true, "updated " + new Date().toLocaleTimeString() + " · " + body.total + " of " +
          Object.entries(body.counts).filter(([k]) => k !== "NEVER_APPLIED").reduce((n, [, v]) => n + v, 0) + " tenants (" + body.source + ")");
      } catch (e) {
        setConn(false, "cannot reach matih serve: " + e.message);
      } finally {
        inflight--;
      }
    }
    load();
    setInterval(() => { if (!inflight && !document.hidden) load(); }, 2000);
  }

  // The phase-duration plot: per phase the guide's range (band), the median (dot) and the p95
  // (end of the line), on a logarithmic time axis from 100 ms to 10 min.
  function renderDurations(dur) {
    const W = 1000, left = 230, right = 250, rowH = 26, top = 8, H = top + rowH * 10 + 28;
    const lo = Math.log10(100), hi = Math.log10(600000);
    const x = (ms) => left + (Math.log10(Math.max(100, Math.min(600000, ms))) - lo) / (hi - lo) * (W - left - right);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "dur-title" });
    s.append(svg("title", { id: "dur-title" }, "Median and p95 duration of each phase across " + dur.tenants + " tenants, against the guide's expected range"));
    for (let i = 0; i < 10; i += 2) s.append(svg("rect", { class: "rowbg", x: 0, y: top + i * rowH, width: W, height: rowH }));
    const ticks = [[100, "0.1 s"], [1000, "1 s"], [10000, "10 s"], [60000, "1 min"], [300000, "5 min"]];
    const axis = svg("g", { class: "axis" });
    for (const [ms, label] of ticks) {
      axis.append(svg("line", { x1: x(ms), x2: x(ms), y1: top, y2: top + rowH * 10 }));
      axis.append(svg("text", { x: x(ms), y: H - 8, "text-anchor": "middle" }, label));
    }
    s.append(axis);
    const tb = $("dur-table").tBodies[0];
    tb.replaceChildren();
    dur.phases.forEach((p, i) => {
      const y = top + i * rowH, mid = y + rowH / 2;
      const g = svg("g", { "data-phase": p.number });
      g.append(svg("text", { class: "name", x: 8, y: mid + 4 }, p.number + " · " + p.name));
      const band = svg("rect", { class: "band", x: x(p.expectedMinMs), y: y + 4, width: x(p.expectedMaxMs) - x(p.expectedMinMs), height: rowH - 8, rx: 3 });
      band.append(svg("title", {}, "guide: " + fmtMs(p.expectedMinMs) + "–" + fmtMs(p.expectedMaxMs)));
      g.append(band);
      const over = p.p95Ms != null && p.p95Ms > p.expectedMaxMs;
      let label = "no completed run";
      if (p.medianMs != null) {
        g.append(svg("line", { class: "whisker" + (over ? " over" : ""), x1: x(p.medianMs), x2: x(p.p95Ms), y1: mid, y2: mid }));
        g.append(svg("line", { class: "whisker" + (over ? " over" : ""), x1: x(p.p95Ms), x2: x(p.p95Ms), y1: mid - 6, y2: mid + 6 }));
        const dot = svg("circle", { class: "dot" + (p.medianMs > p.expectedMaxMs ? " over" : ""), cx: x(p.medianMs), cy: mid, r: 5 });
        dot.append(svg("title", {}, `median ${fmtMs(p.medianMs)}, p95 ${fmtMs(p.p95Ms)} over ${p.count} runs`));
        g.append(dot);
        label = `p50 ${short(p.medianMs)} · p95 ${short(p.p95Ms)}`;
      }
      g.append(svg("text", { class: over ? "slow" : "lbl", x: W - right + 10, y: mid + 4 }, label + (p.over ? ` · ${p.over} over` : ` · n=${p.count}`)));
      s.append(g);
      tb.append(el("tr", {}, el("td", {}, p.number + " " + p.name), el("td", { class: "num" }, String(p.count)),
        el("td", { class: "num" }, fmtMs(p.medianMs) || "—"), el("td", { class: "num" }, fmtMs(p.p95Ms) || "—"),
        el("td", {}, fmtMs(p.expectedMinMs) + "–" + fmtMs(p.expectedMaxMs)), el("td", { class: "num" }, String(p.over))));
    });
    $("dur-plot").replaceChildren(s);
  }

  // ---- a tenant ------------------------------------------------------------------------------
  function tenantView(slug) {
    $("tenant-view").hidden = false;
    document.title = slug + " · matih";
    crumbs([["Fleet", "/"], [slug, null]]);
    let doc = null, runs = [], runsPage = 1, runsBody = null, selected = null, drift = null;
    const opened = new Map(); // phase number -> open, as the operator left it

    async function loadAll() {
      try {
        doc = await api("/api/v1/tenants/" + encodeURIComponent(slug) + "/provisioning/status");
      } catch (e) {
        $("t-h").textContent = slug;
        setConn(false, e.message);
        return false;
      }
      await Promise.all([loadRuns(), loadDrift()]);
      render();
      setConn(true, "live · updated " + new Date().toLocaleTimeString());
      return true;
    }
    async function loadRuns() {
      try {
        runsBody = await api("/api/v1/tenants/" + encodeURIComponent(slug) + "/runs?pageSize=10&page=" + runsPage);
        if (runsPage === 1) runs = runsBody.items;
      } catch (e) { setConn(false, "runs: " + e.message); }
    }
    async function loadDrift() {
      try { drift = await api("/api/v1/tenants/" + encodeURIComponent(slug) + "/drift"); } catch (e) { drift = null; }
    }

    // The run shown: the one picked in the runs table, else the last one.
    function shownRun() {
      if (selected) return (runsBody && runsBody.items.find((r) => r.runId === selected)) || runs.find((r) => r.runId === selected) || null;
      return runs[0] || null;
    }

    function render() {
      if (!doc) return;
      $("t-h").textContent = doc.slug;
      $("t-status").className = "badge s-" + doc.status;
      $("t-status").textContent = doc.status;
      $("t-status").dataset.status = doc.status;
      const facts = [["Tenant id", doc.tenantId], ["Tier", doc.tier || "—"], ["Region", doc.region || "—"],
        ["Current phase", doc.currentPhase ? doc.currentPhase + "/10 " + doc.currentPhaseName : "—"],
        ["Resources", String(doc.resources.total)], ["Completed", fmtTime(doc.provisioningCompletedAt) || "—"],
        ["Updated", fmtTime(doc.updatedAt) || "—"]];
      $("t-facts").replaceChildren(...facts.map(([k, v], i) => el("div", { class: i === 0 || i === 3 ? "wide" : null }, el("dt", {}, k), el("dd", { class: i === 0 ? "mono" : null }, v))));
      renderDriftBadge();
      renderFailure();
      renderTimeline();
      renderOps();
      renderOutputs();
      renderRuns();
    }

    function renderDriftBadge() {
      const b = $("t-drift");
      const info = $("drift-info"), table = $("drift-findings");
      if (!drift || !drift.available) {
        b.hidden = true;
        info.textContent = drift ? "No drift information: " + drift.reason + "." : "";
        table.hidden = true;
        return;
      }
      b.hidden = false;
      b.className = "badge d-" + drift.status;
      b.textContent = drift.status === "drifted" ? "drifted · " + drift.findings.length + " finding(s)" : drift.status.replace("_", " ");
      info.textContent = "Last drift check: " + fmtTime(drift.checkedAt) + " — " + (drift.findings.length ? drift.findings.length + " finding(s)." : "in sync.");
      table.hidden = drift.findings.length === 0;
      table.tBodies[0].replaceChildren(...drift.findings.map((f) => {
        const details = el("td", { class: "mono" });
        if (f.error) details.append(el("div", {}, f.error));
        for (const a of f.attributes || []) details.append(el("div", {}, a.path + ": " + JSON.stringify(a.before) + " → " + JSON.stringify(a.after)));
        return el("tr", {}, el("td", { class: "mono" }, f.address), el("td", {}, f.kind + (f.action ? " (" + f.action + ")" : "")), details);
      }));
    }

    function renderFailure() {
      const run = shownRun();
      const failedRun = run && run.outcome === "failed" ? run : null;
      const error = (failedRun && failedRun.error) || (doc.status === "FAILED" && !selected ? doc.provisioningError : null);
      $("failure").hidden = !error;
      if (!error) return;
      $("fail-error").textContent = error;
      const rb = (failedRun && failedRun.rolledBack) || [];
      const ul = $("fail-rollback");
      ul.replaceChildren(...(rb.length ? rb.map((r) => el("li", { "data-role": "rollback" },
        el("span", { class: "mono" }, r.address), " — " + (r.outcome === "deleted" ? "deleted again" : "could not be deleted") +
        (r.durationMs != null ? " (" + fmtMs(r.durationMs) + ")" : ""))) : [el("li", { class: "muted" }, "nothing was rolled back")]));
    }

    // The timeline: one row per phase on a time axis from the run's start; the guide's range for
    // the phase drawn behind its bar, starting where the phase started.
    function timelinePhases() {
      const run = shownRun();
      if (!selected) {
        // The last run: the status document (kept live by the WebSocket) has every phase's times.
        return doc.phases.map((p) => ({ number: p.number, name: p.name, state: p.state, startedAt: p.startedAt, durationMs: p.durationMs }));
      }
      return PHASES.map((name, i) => {
        const p = run && run.phases.find((x) => x.number === i + 1);
        return p ? { number: p.number, name, state: p.state, startedAt: p.startedAt, durationMs: p.durationMs } : { number: i + 1, name, state: "PENDING" };
      });
    }
    function renderTimeline() {
      const phases = timelinePhases();
      const run = shownRun();
      const now = Date.now();
      // Phases run one after another: a phase starts no earlier than the one before ended (state
      // times are whole seconds, durations milliseconds).
      let t0 = null, prevEnd = null;
      const spans = phases.map((p) => {
        if (!p.startedAt || p.state === "PENDING") return null;
        let start = Date.parse(p.startedAt);
        if (prevEnd != null && start < prevEnd) start = prevEnd;
        if (t0 == null) t0 = start;
        const end = p.durationMs != null ? start + p.durationMs : (p.state === "RUNNING" ? Math.max(now, start) : start);
        prevEnd = end;
        return { start, end };
      });
      const ran = spans.filter(Boolean);
      const total = ran.length ? Math.max(...ran.map((s) => s.end)) - t0 : 0;
      const span = Math.max(1000, total * 1.12);
      const W = 1000, left = 230, right = 220, rowH = 26, top = 6, H = top + rowH * 10 + 28;
      const x = (ms) => left + Math.min(1, Math.max(0, ms / span)) * (W - left - right);
      const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "tl-title" });
      s.append(svg("title", { id: "tl-title" }, "Timeline of the run: one bar per phase, the guide's expected range behind it"));
      for (let i = 0; i < 10; i += 2) s.append(svg("rect", { class: "rowbg", x: 0, y: top + i * rowH, width: W, height: rowH }));
      const axis = svg("g", { class: "axis" });
      const step = niceStep(span / 6);
      for (let t = 0; t <= span; t += step) {
        axis.append(svg("line", { x1: x(t), x2: x(t), y1: top, y2: top + rowH * 10 }));
        axis.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, fmtMs(t) || "0"));
      }
      s.append(axis);
      phases.forEach((p, i) => {
        const y = top + i * rowH, mid = y + rowH / 2, sp = spans[i];
        const g = svg("g", { "data-phase": p.number, "data-state": p.state, class: "tl-row" });
        g.append(svg("text", { class: "name", x: 8, y: mid + 4 }, p.number + " · " + p.name));
        const [gmin, gmax] = GUIDE[i];
        let label = p.state === "PENDING" ? "not run" : "";
        if (sp) {
          const off = sp.start - t0;
          const bx = x(off + gmin * 1000), bw = x(off + gmax * 1000) - bx;
          if (bw > 0) {
            const band = svg("rect", { class: "band", x: bx, y: y + 3, width: bw, height: rowH - 6, rx: 3 });
            band.append(svg("title", {}, "guide: " + gmin + "–" + gmax + " s"));
            g.append(band);
          }
          const w = Math.max(3, x(sp.end - t0) - x(off));
          const bar = svg("rect", { class: "tl-bar " + p.state, x: x(off), y: y + 7, width: w, height: rowH - 14, rx: 2 });
          const took = sp.end - sp.start;
          bar.append(svg("title", {}, `${p.name}: ${p.state}, ${fmtMs(took)} (guide ${gmin}–${gmax} s)`));
          g.append(bar);
          const slow = took > gmax * 1000;
          label = fmtMs(took) + (p.state === "RUNNING" ? " so far" : "") + (slow ? " · over the guide's " + gmax + " s" : " · guide " + gmin + "–" + gmax + " s");
          g.append(svg("text", { class: slow ? "slow" : "lbl", x: W - right + 10, y: mid + 4 }, label));
        } else {
          g.append(svg("text", { class: "lbl", x: W - right + 10, y: mid + 4 }, label));
        }
        s.append(g);
      });
      $("timeline").replaceChildren(s);
      const meta = [];
      if (run) {
        meta.push((selected ? "Run " : "Last run ") + run.runId.slice(0, 8), run.operation, run.outcome);
        if (run.startedAt) meta.push("started " + fmtTime(run.startedAt));
      }
      if (total) meta.push("took " + fmtMs(total) + (doc.status === "PROVISIONING" && !selected ? " so far" : ""));
      $("tl-meta").textContent = meta.join(" · ") || "No run yet.";
      $("tl-h").textContent = selected ? "Timeline of run " + selected.slice(0, 8) : "Timeline of the last run";
    }
    function niceStep(x) {
      const p = Math.pow(10, Math.floor(Math.log10(Math.max(1, x))));
      for (const k of [1, 2, 5, 10]) if (k * p >= x) return k * p;
      return 10 * p;
    }

    function renderOps() {
      const run = shownRun();
      const box = $("ops");
      if (!run || !run.phases.length) { box.replaceChildren(el("p", { class: "hint" }, "No operations recorded yet.")); return; }
      box.replaceChildren(...run.phases.map((p) => {
        const ops = p.operations || [];
        const failed = ops.filter((o) => o.outcome !== "ok").length;
        const d = el("details", { class: "phase", "data-phase": String(p.number) });
        // Open: what the operator opened, else the phase running now and a phase that failed.
        const auto = p.state === "FAILED" || p.state === "ROLLED_BACK" || p.state === "HALTED" || p.state === "RUNNING";
        d.open = opened.has(p.number) ? opened.get(p.number) : auto;
        const summary = el("summary", {}, el("span", { class: "pn" }, p.number + " · " + p.name), badge(p.state),
          el("span", { class: "meta" }, ops.length + " operation(s)" + (failed ? ", " + failed + " failed" : "") +
            (p.durationMs != null ? " · " + fmtMs(p.durationMs) : "") + " · guide " + GUIDE[p.number - 1].join("–") + " s"));
        // Only what the operator opens or closes (mouse or keyboard) is remembered across renders.
        summary.addEventListener("click", () => opened.set(p.number, !d.open));
        d.append(summary);
        if (ops.length) {
          const t = el("table", { class: "grid compact" },
            el("thead", {}, el("tr", {}, ...["Resource", "Action", "Outcome", "Duration", "Error"].map((h) => el("th", { scope: "col", class: h === "Duration" ? "num" : null }, h)))));
          const tb = el("tbody");
          for (const o of ops) {
            tb.append(el("tr", { "data-outcome": o.outcome }, el("td", { class: "mono" }, o.address), el("td", {}, o.action),
              el("td", {}, el("span", { class: "badge o-" + o.outcome }, o.outcome)), el("td", { class: "num" }, fmtMs(o.durationMs)),
              el("td", { class: o.error ? "err" : "muted" }, o.error || o.note || "")));
          }
          t.append(tb);
          d.append(t);
        } else {
          d.append(el("p", { class: "hint" }, "No resource changed in this phase."));
        }
        return d;
      }));
    }

    function renderOutputs() {
      const outs = doc.outputs || [];
      $("outputs-empty").hidden = outs.length > 0;
      $("outputs").hidden = outs.length === 0;
      $("outputs").tBodies[0].replaceChildren(...outs.map((o) => {
        const v = Array.isArray(o.value) ? o.value.join(", ") : typeof o.value === "object" ? JSON.stringify(o.value) : String(o.value);
        const cell = o.name === "url" && /^https?:\/\/[^\s]+$/.test(v) ? el("a", { href: v, rel: "noreferrer noopener" }, v) : v;
        return el("tr", {}, el("td", {}, o.name), el("td", { class: "mono" }, cell), el("td", { class: "mono muted" }, o.resource));
      }));
    }

    function renderRuns() {
      const body = runsBody;
      const tb = $("runs").tBodies[0];
      if (!body) { tb.replaceChildren(); return; }
      tb.replaceChildren(...body.items.map((r, i) => {
        const states = PHASES.map((_, i) => { const p = r.phases.find((x) => x.number === i + 1); return p ? p.state : "PENDING"; });
        const latest = body.page === 1 && i === 0;
        const shown = selected ? selected === r.runId : latest;
        const show = el("button", { type: "button", class: "link", "aria-pressed": shown ? "true" : "false",
          "aria-label": "show the run of " + fmtTime(r.startedAt) + " on the timeline" }, shown ? "shown" : "show");
        show.addEventListener("click", () => { selected = latest ? null : r.runId; render(); });
        return el("tr", { class: shown ? "selected" : null, "data-run": r.runId },
          el("td", {}, fmtTime(r.startedAt)), el("td", {}, r.operation), el("td", {}, el("span", { class: "badge o-" + r.outcome }, r.outcome)),
          el("td", { class: "num" }, fmtMs(r.durationMs != null ? r.durationMs : r.phases.reduce((n, p) => n + (p.durationMs || 0), 0))), el("td", {}, progressBar(states)),
          el("td", { class: "err" }, r.error ? (r.error.length > 160 ? r.error.slice(0, 160) + "…" : r.error) : ""), el("td", {}, show));
      }));
      $("r-info").textContent = body.total ? `page ${body.page} of ${Math.max(1, Math.ceil(body.total / body.pageSize))} · ${body.total} run(s) · from the ${body.source === "audit" ? "audit log" : "live feed"}` : "no runs yet";
      $("r-prev").disabled = body.page <= 1;
      $("r-next").disabled = body.page * body.pageSize >= body.total;
    }
    $("r-prev").addEventListener("click", async () => { runsPage = Math.max(1, runsPage - 1); await loadRuns(); render(); });
    $("r-next").addEventListener("click", async () => { runsPage += 1; await loadRuns(); render(); });

    // ---- live --------------------------------------------------------------------------------
    function log(ev) {
      if (ev.type === "snapshot") return;
      const parts = [new Date(ev.time).toLocaleTimeString(), ev.type.replace("_", " ")];
      if (ev.phase) parts.push("phase " + ev.phase);
      if (ev.resource) parts.push(ev.resource);
      if (ev.action) parts.push(ev.action);
      if (ev.outcome) parts.push(ev.outcome);
      if (ev.durationMs != null) parts.push(fmtMs(ev.durationMs));
      if (ev.tenantStatus) parts.push(ev.tenantStatus);
      if (ev.error) parts.push(ev.error);
      const li = el("li", { class: ev.error || ev.outcome === "failed" ? "bad" : null }, parts.join("  "));
      $("log-empty").hidden = true;
      const ol = $("log");
      ol.append(li);
      while (ol.children.length > 400) ol.firstChild.remove();
      ol.scrollTop = ol.scrollHeight;
    }
    // Applies one event to the status document, as the server's StatusDoc::fold does.
    function fold(d, ev) {
      const p = d.phases.find((x) => x.number === ev.phase);
      switch (ev.type) {
        case "snapshot": return ev.status;
        case "phase_started":
          if (d.status !== "DESTROYING") d.status = ev.destroy ? "DESTROYING" : "PROVISIONING";
          d.provisioningError = null;
          d.currentPhase = ev.phase; d.currentPhaseName = ev.phaseName;
          if (p) Object.assign(p, { state: "RUNNING", startedAt: ev.time, finishedAt: null, durationMs: null, operations: 0 });
          break;
        case "resource_finished":
          if (ev.outcome === "ok" && p) p.operations += 1;
          if (ev.outcome === "ok" && ev.action === "create") d.resources.total += 1;
          if (ev.outcome === "ok" && ev.action === "delete") d.resources.total -= 1;
          break;
        case "phase_finished":
          if (p) Object.assign(p, { state: ev.outcome === "completed" ? "COMPLETED" : "FAILED", finishedAt: ev.time, durationMs: ev.durationMs });
          if (ev.outcome !== "completed") { d.status = "FAILED"; d.provisioningError = ev.error || d.provisioningError; }
          break;
        case "tenant_finished":
          d.status = ev.tenantStatus || d.status;
          if (d.status === "ACTIVE") { d.currentPhase = null; d.currentPhaseName = null; d.provisioningError = null; d.provisioningCompletedAt = ev.time; }
          else if (ev.error) d.provisioningError = ev.error;
          break;
      }
      return d;
    }
    // Applies one event to the runs (the operations of the running run), as runs::from_events does.
    function foldRun(ev) {
      if (!ev.run || ev.type === "snapshot") return;
      let run = runs.find((r) => r.runId === ev.run);
      if (!run) {
        run = { runId: ev.run, operation: ev.destroy ? "destroy" : "apply", outcome: "running", startedAt: ev.time, phases: [], rolledBack: [] };
        runs.unshift(run);
        if (runsBody && runsPage === 1) { runsBody.items.unshift(run); runsBody.total += 1; if (runsBody.items.length > runsBody.pageSize) runsBody.items.pop(); }
      }
      const phase = (n) => {
        let p = run.phases.find((x) => x.number === n);
        if (!p) { p = { number: n, name: PHASES[n - 1], state: "RUNNING", operations: [] }; run.phases.push(p); run.phases.sort((a, b) => a.number - b.number); }
        return p;
      };
      if (ev.type === "phase_started" && ev.phase) Object.assign(phase(ev.phase), { state: "RUNNING", startedAt: ev.time });
      if (ev.type === "phase_finished" && ev.phase) Object.assign(phase(ev.phase), { state: ev.outcome === "completed" ? "COMPLETED" : "FAILED", durationMs: ev.durationMs });
      if (ev.type === "rollback_started" && ev.phase) phase(ev.phase).state = "ROLLED_BACK";
      if (ev.type === "resource_finished" && ev.phase) {
        const failed = ev.outcome !== "ok";
        phase(ev.phase).operations.push({ address: ev.resource, action: ev.action, outcome: failed ? "failed" : "ok", durationMs: ev.durationMs, error: failed ? ev.error : null });
      }
      if (ev.type === "tenant_finished") {
        run.outcome = ev.tenantStatus === "ACTIVE" ? "ok" : ev.tenantStatus === "DESTROYED" ? "destroyed" : "failed";
        run.durationMs = ev.durationMs; run.error = ev.error || null;
      }
    }
    let pending = false, ticking = null, refetch = null;
    function schedule() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; render(); });
    }
    async function connect() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      // With a token, the upgrade carries a one-use ticket that expires in seconds, not the token.
      let q = "";
      if (token) {
        try {
          const r = await fetch("/api/v1/ws-tickets", { method: "POST", headers: auth });
          q = "?ticket=" + encodeURIComponent((await r.json()).ticket);
        } catch (e) {
          setConn(false, "reconnecting");
          setTimeout(connect, 2000);
          return;
        }
      }
      const ws = new WebSocket(proto + "//" + location.host + "/ws/provisioning/" + encodeURIComponent(slug) + q);
      ws.onopen = () => setConn(true, "live");
      ws.onmessage = (msg) => {
        let ev;
        try { ev = JSON.parse(msg.data); } catch (e) { return; }
        window.matihSeen.push(ev);
        doc = doc ? fold(doc, ev) : ev.status || doc;
        foldRun(ev);
        log(ev);
        if (ev.type === "tenant_finished") {
          // The audit log has the whole run (rollbacks included) once the apply lets go of the store.
          setTimeout(async () => { await Promise.all([loadRuns(), loadDrift()]); render(); }, 400);
        } else if (ev.type === "phase_finished" || (ev.type === "snapshot" && window.matihSeen.length > 1)) {
          // Events between the page's first read of the runs and its WebSocket (or missed by a slow
          // client, which gets a snapshot instead) are in the feed: read the runs again.
          clearTimeout(refetch);
          refetch = setTimeout(async () => { await loadRuns(); render(); }, 300);
        }
        setConn(true, "live · last event " + new Date().toLocaleTimeString());
        schedule();
      };
      ws.onclose = () => { setConn(false, "disconnected; reconnecting…"); setTimeout(connect, 1000); };
    }
    loadAll().then((ok) => {
      if (!ok) return;
      connect();
      // A running phase's bar grows with the clock.
      ticking = setInterval(() => { if (doc && doc.phases.some((p) => p.state === "RUNNING")) schedule(); }, 500);
      document.body.dataset.ready = "1";
    });
    void ticking;
  }
})();
