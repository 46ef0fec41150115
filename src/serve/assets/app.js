// The matih status page: the tenant list from /api/v1/tenants (refreshed every few seconds) and,
// for each tenant, a WebSocket to /ws/provisioning/{slug} that keeps its row live.
"use strict";
(function () {
  const token = new URLSearchParams(location.search).get("access_token");
  const auth = token ? { Authorization: "Bearer " + token } : {};
  const tenants = new Map(); // slug -> status document
  const sockets = new Map(); // slug -> WebSocket
  window.matihSeen = []; // every event received over WebSockets (tests read it)
  const $ = (id) => document.getElementById(id);

  function fmtMs(ms) {
    if (ms == null) return "";
    return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }
  function totalMs(doc) {
    return doc.phases.reduce((n, p) => n + (p.durationMs || 0), 0);
  }

  function render() {
    const body = document.querySelector("#tenants tbody");
    body.replaceChildren();
    const slugs = [...tenants.keys()].sort();
    $("empty").hidden = slugs.length > 0;
    for (const slug of slugs) {
      const d = tenants.get(slug);
      const tr = el("tr", { id: "tenant-" + slug, "data-status": d.status });
      const name = el("td");
      name.append(el("strong", {}, d.slug), el("div", { class: "muted" }, d.tenantId));
      const st = el("td");
      st.append(el("span", { class: "badge s-" + d.status, "data-role": "status" }, d.status));
      if (d.provisioningError) st.append(el("div", { class: "error" }, d.provisioningError));
      const bar = el("div", { class: "bar", "data-role": "bar" });
      for (const p of d.phases) {
        bar.append(el("div", { class: "seg " + p.state, title: p.number + " " + p.name + ": " + p.state + (p.durationMs != null ? " (" + fmtMs(p.durationMs) + ")" : "") }));
      }
      const prog = el("td");
      prog.append(bar);
      const done = d.phases.filter((p) => p.state === "COMPLETED").length;
      const phase = d.currentPhase ? d.currentPhase + "/10 " + d.currentPhaseName : done + "/10 completed";
      tr.append(name, st, prog, el("td", {}, phase), el("td", {}, String(d.resources.total)),
        el("td", {}, fmtMs(totalMs(d))), el("td", { class: "muted" }, d.provisioningCompletedAt || ""));
      body.append(tr);
    }
  }

  function log(ev) {
    if (ev.type === "snapshot") return;
    const parts = [ev.time, ev.tenant, ev.type];
    if (ev.phase) parts.push("phase " + ev.phase);
    if (ev.resource) parts.push(ev.resource);
    if (ev.outcome) parts.push(ev.outcome);
    if (ev.tenantStatus) parts.push(ev.tenantStatus);
    const li = el("li", {}, parts.join("  "));
    $("log").append(li);
    while ($("log").children.length > 300) $("log").firstChild.remove();
    li.scrollIntoView({ block: "nearest" });
  }

  // Applies one event to a status document, as the server's StatusDoc::fold does.
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

  function connect(slug) {
    if (sockets.has(slug)) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = token ? "?access_token=" + encodeURIComponent(token) : "";
    const ws = new WebSocket(proto + "//" + location.host + "/ws/provisioning/" + encodeURIComponent(slug) + q);
    sockets.set(slug, ws);
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      window.matihSeen.push(ev);
      const cur = tenants.get(slug);
      tenants.set(slug, cur ? fold(cur, ev) : (ev.status || cur));
      log(ev);
      render();
    };
    ws.onclose = () => { sockets.delete(slug); setTimeout(() => connect(slug), 1000); };
  }

  async function refresh() {
    try {
      const r = await fetch("api/v1/tenants", { headers: auth });
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      const body = await r.json();
      for (const t of body.tenants) {
        if (!tenants.has(t.slug)) {
          const s = await fetch("api/v1/tenants/" + encodeURIComponent(t.slug) + "/provisioning/status", { headers: auth });
          if (s.ok) tenants.set(t.slug, await s.json());
        }
        connect(t.slug);
      }
      $("conn").textContent = "updated " + new Date().toLocaleTimeString() + " (" + body.source + ")";
      render();
    } catch (e) {
      $("conn").textContent = "cannot reach matih serve: " + e.message;
    }
  }
  refresh();
  setInterval(refresh, 3000);
})();
