// clusto's web UI: one page script, no build step. Every figure comes from
// the same API a script would use (/apis/clusto.dev/v1alpha1), with the
// bearer token the user typed (kept in localStorage); pages redraw when the
// watch stream says a revision landed.
"use strict";

const API = "/apis/clusto.dev/v1alpha1";
const SVG = "http://www.w3.org/2000/svg";
const UNIT = 22; // px per rack unit in the elevation

// --- DOM helpers -----------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) el.append(c instanceof Node ? c : String(c));
  return el;
}

const link = (name) => h("a", { href: `/ui/entities/${encodeURIComponent(name)}` }, name);
const rackLink = (name) => h("a", { href: `/ui/racks/${encodeURIComponent(name)}` }, name);

function table(headers, rows) {
  if (!rows.length) return h("p", { class: "muted" }, "none");
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c ?? ""))))));
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

const text = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));

// --- the API ---------------------------------------------------------------

class ApiError extends Error {
  constructor(code, status) {
    super(status && status.message ? status.message : `HTTP ${code}`);
    this.code = code;
  }
}

function headers(extra) {
  const t = localStorage.getItem("clusto-token");
  return Object.assign(t ? { Authorization: `Bearer ${t}` } : {}, extra || {});
}

async function api(path, init) {
  const res = await fetch(API + path, Object.assign({}, init, { headers: headers(init && init.headers) }));
  if (!res.ok) {
    let status = null;
    try { status = await res.json(); } catch (_) { /* not a Status */ }
    if (res.status === 401) askForToken();
    throw new ApiError(res.status, status);
  }
  return (init && init.text) ? res.text() : res.json();
}

function askForToken() {
  const box = document.getElementById("token");
  box.hidden = false;
  document.getElementById("token-input").focus();
}

// --- live updates: one watch over every kind ---------------------------------

let watching = null;

// Redraw `render` whenever a revision lands after `rv`. A watch that ends
// (server restart, 410 Gone) redraws too, which lists again and re-watches.
function follow(rv, render) {
  if (watching) watching.abort();
  const ctl = new AbortController();
  watching = ctl;
  const live = document.getElementById("live");
  (async () => {
    let timer = null;
    try {
      const res = await fetch(`${API}/entities?watch=true&resourceVersion=${rv}`, { headers: headers(), signal: ctl.signal });
      if (!res.ok) throw new Error(`watch: HTTP ${res.status}`);
      live.classList.add("on");
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line);
          if (ev.type === "BOOKMARK") continue;
          // Batch a revision's events into one redraw.
          clearTimeout(timer);
          timer = setTimeout(() => { if (watching === ctl) render(); }, 150);
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    live.classList.remove("on");
    if (watching === ctl) setTimeout(() => { if (watching === ctl) render(); }, 1000);
  })();
}

async function head() {
  const r = await api("/revisions?limit=1");
  return r.items.length ? r.items[0].revision : 0;
}

// --- pages ------------------------------------------------------------------

async function home() {
  const [rv, dcs, ipms] = await Promise.all([head(), api("/datacenters"), api("/ipmanagers")]);
  const sections = [h("h1", {}, "Inventory")];
  sections.push(h("h2", {}, "Datacenters and racks"));
  if (!dcs.items.length) sections.push(h("p", { class: "muted" }, "no datacenters yet"));
  for (const dc of dcs.items) {
    const name = dc.metadata.name;
    const racks = await api(`/racks?query=${encodeURIComponent(`in:${name}`)}&limit=5000`);
    sections.push(h("h3", {}, link(name), " ", h("span", { class: "muted" }, `${racks.items.length} rack${racks.items.length === 1 ? "" : "s"}`)),
      h("div", { class: "racks" }, racks.items.map((r) => rackLink(r.metadata.name))));
  }
  sections.push(h("h2", {}, "IP managers"), ipTable(ipms.items));
  show(...sections);
  return rv;
}

function utilisation(status) {
  const used = status.allocated || 0;
  const cap = status.capacity || 0;
  const pct = cap ? Math.min(100, (100 * used) / cap) : 0;
  const fill = h("span", {});
  fill.style.width = `${pct.toFixed(1)}%`; // a style property, which the page's policy allows
  return h("span", { class: "util", "data-used": used, "data-capacity": cap },
    h("span", { class: "bar" }, fill),
    ` ${used} of ${cap} (${pct.toFixed(pct < 10 ? 1 : 0)}%)`);
}

function ipTable(items) {
  return table(["manager", "network", "gateway", "used"], items.map((m) => [
    link(m.metadata.name), m.spec.cidr || "", m.spec.gateway || "", utilisation(m.status || {}),
  ]));
}

function searchExpr(q) {
  // A bare word is a name search; anything with a colon is the query language.
  return /[:()]/.test(q) ? q : `name:*${q.trim()}*`;
}

async function search(q) {
  document.getElementById("q").value = q;
  const rv = await head();
  const nodes = [h("h1", {}, "Search ", h("span", { class: "kind" }, searchExpr(q)))];
  try {
    const r = await api(`/entities?query=${encodeURIComponent(searchExpr(q))}&limit=500`);
    nodes.push(h("p", { class: "muted" }, r.metadata.continue ? "first 500 matches" : `${r.items.length} matches`));
    nodes.push(table(["name", "kind", "driver", "location", "addresses"], r.items.map((o) => [
      link(o.metadata.name), o.kind, (o.spec && o.spec.driver) || "", placeOf(o),
      ((o.status && o.status.addresses) || []).map((a) => a.address).join(", "),
    ])));
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    nodes.push(h("div", { class: "error" }, e.message));
  }
  show(...nodes);
  return rv;
}

function placeOf(o) {
  const sp = o.spec || {};
  if (sp.rack) return h("span", {}, rackLink(sp.rack), sp.ru ? ` RU ${sp.ru}` : "");
  if (sp.datacenter) return link(sp.datacenter);
  return "";
}

async function entity(name) {
  const rv = await head();
  const o = await api(`/entities/${encodeURIComponent(name)}`);
  const [attrs, hist] = await Promise.all([
    api(`/entities/${encodeURIComponent(name)}/attributes?merged=true`),
    api(`/entities/${encodeURIComponent(name)}/history?limit=20`),
  ]);
  const sp = o.spec || {};
  const st = o.status || {};
  const nodes = [h("h1", {}, name, h("span", { class: "kind" }, `${o.kind}${sp.driver ? ` · ${sp.driver}` : ""}`))];
  const facts = [];
  if (sp.rack) facts.push(["rack", h("span", {}, rackLink(sp.rack), sp.ru ? ` RU ${sp.ru}` : "")]);
  if (st.datacenter) facts.push(["datacenter", link(st.datacenter)]);
  if (o.metadata.managedBy) facts.push(["managed by", o.metadata.managedBy]);
  if (o.kind === "Rack") facts.push(["elevation", rackLink(name)]);
  if (o.kind === "IPManager") facts.push(["network", sp.cidr || ""], ["used", utilisation(st)]);
  for (const [k, v] of Object.entries(sp)) {
    if (["attrs", "pools", "ports", "rack", "ru", "driver"].includes(k)) continue;
    facts.push([k, text(v)]);
  }
  nodes.push(table(["", ""], facts));
  nodes.push(h("h2", {}, "Attributes (merged, nearest source first)"),
    table(["key", "subkey", "number", "value", "source"], attrs.items.map((a) => [
      a.key, a.subkey ?? "", a.number ?? "", text(a.value), a.source === name ? "itself" : link(a.source),
    ])));
  nodes.push(h("h2", {}, "Ports and cables"),
    table(["port", "connected to", "MAC", "OS port"], (sp.ports || []).map((p) => [
      p.port, p.connectedTo ? peer(p.connectedTo) : "", p.mac || "", p.osPort || "",
    ])));
  nodes.push(h("h2", {}, "Addresses"),
    table(["address", "manager", "OS port", "port"], (st.addresses || []).map((a) => [
      a.address, link(a.manager), a.osPort || "", a.port || "",
    ])));
  nodes.push(h("h2", {}, "Pools"), (sp.pools || []).length
    ? h("div", { class: "racks" }, sp.pools.map(link)) : h("p", { class: "muted" }, "none"));
  const inside = st.contents || st.members;
  if (inside) {
    nodes.push(h("h2", {}, st.members ? "Members" : "Contents"), h("div", { class: "racks" }, inside.map(link)));
  }
  nodes.push(h("h2", {}, "History"), ...hist.items.map(revision));
  show(...nodes);
  return rv;
}

// The far end of a cable, `device:type:number`, with the device linked.
function peer(end) {
  const at = end.indexOf(":");
  return at < 0 ? link(end) : h("span", {}, link(end.slice(0, at)), end.slice(at));
}

function revision(r) {
  const cls = { "+": "op-add", "-": "op-del", "~": "op-mod" };
  return h("div", { class: "rev" },
    h("div", { class: "meta" }, `revision ${r.revision} · ${r.time} · ${r.user} · ${r.manager || ""} · ${r.message}`),
    h("div", {}, (r.changes || []).map((c) => h("div", { class: cls[c.op] || "" }, `${c.op} ${c.text}`))));
}

// --- the rack elevation ------------------------------------------------------

const COLOURS = { Server: "#2f6fd6", NetworkSwitch: "#1f8a70", PowerStrip: "#c2662d", ConsoleServer: "#7a4fc4" };

// One SVG, units numbered on both rails, top unit first; every device a
// link drawn across its units; empty units drawn as empty slots.
function elevationSvg(el, side) {
  const units = el.maxU - el.minU + 1;
  const W = 340, rail = 34;
  const svg = s("svg", {
    class: "elevation", width: W + 2 * rail, height: units * UNIT + 2, viewBox: `0 0 ${W + 2 * rail} ${units * UNIT + 2}`,
    "data-rack": el.rack, "data-side": side, role: "img", "aria-label": `rack ${el.rack}, ${side} view`,
  });
  const y = (u) => (el.maxU - u) * UNIT + 1;
  for (let u = el.maxU; u >= el.minU; u--) {
    svg.append(
      s("text", { class: "unit-num", x: rail - 6, y: y(u) + UNIT / 2 + 4, "text-anchor": "end" }, String(u)),
      s("text", { class: "unit-num", x: W + rail + 6, y: y(u) + UNIT / 2 + 4 }, String(u)),
      s("rect", { class: "empty", x: rail, y: y(u), width: W, height: UNIT, "data-unit": u }),
    );
  }
  for (const m of el.mounted) {
    const back = m.face !== side;
    if (back && !m.fullDepth) continue; // a half-depth device on the other side cannot be seen
    const top = y(m.ru.end);
    const height = (m.ru.end - m.ru.start + 1) * UNIT;
    const label = back ? `[${m.name}]` : m.name;
    const g = s("g", {
      class: `device${back ? " back" : ""}`, "data-name": m.name, "data-kind": m.kind,
      "data-ru-start": m.ru.start, "data-ru-end": m.ru.end, "data-face": m.face,
    },
    s("title", {}, `${m.name} (${m.kind}, ${m.driver}) RU ${m.ru.start}${m.ru.end > m.ru.start ? `-${m.ru.end}` : ""}, ${m.face}${back ? ", seen from behind" : ""}`),
    s("rect", { x: rail + 1, y: top + 1, width: W - 2, height: height - 2, rx: 3, fill: COLOURS[m.kind] || "#4a5568" }),
    s("text", { x: rail + W / 2, y: top + height / 2 + 4, "text-anchor": "middle" }, label));
    svg.append(s("a", { href: `/ui/entities/${encodeURIComponent(m.name)}` }, g));
  }
  return svg;
}

async function rack(name, side) {
  const rv = await head();
  const el = await api(`/racks/${encodeURIComponent(name)}/elevation`);
  const used = el.mounted.reduce((n, m) => n + m.ru.end - m.ru.start + 1, 0);
  const units = el.maxU - el.minU + 1;
  const toggle = h("div", { class: "toggle" }, ["front", "rear"].map((f) =>
    h("a", { href: `/ui/racks/${encodeURIComponent(name)}${f === "rear" ? "?side=rear" : ""}`, class: f === side ? "current" : "" }, f)));
  show(
    h("h1", {}, name, h("span", { class: "kind" }, `Rack · ${units}U · ${used} units used · ${side} view`)),
    h("p", {}, link(name), " (attributes, history)"),
    toggle,
    h("div", { class: "elevation-wrap" },
      elevationSvg(el, side),
      h("div", {},
        h("h2", {}, "Devices"),
        table(["RU", "name", "kind", "face"], el.mounted.slice().reverse().map((m) => [
          m.ru.start === m.ru.end ? String(m.ru.start) : `${m.ru.start}-${m.ru.end}`, link(m.name), m.kind, m.face,
        ])),
        el.unplaced.length ? h("div", {}, h("h2", {}, "In the rack at no unit"), h("div", { class: "racks" }, el.unplaced.map(link))) : "")),
  );
  return rv;
}

// --- plan preview ------------------------------------------------------------

function planPage() {
  const area = h("textarea", { id: "manifests", spellcheck: "false", placeholder: "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s1}\nspec: {rack: r1, ru: 3}" });
  const set = h("input", { id: "apply-set", value: "ui", size: 16 });
  const out = h("div", { id: "plan-out" });
  const form = h("form", { id: "plan-form" },
    area, h("p", {}, h("label", {}, "apply set ", set), " ", h("button", { type: "submit" }, "Plan")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.replaceChildren(h("p", { class: "muted" }, "planning…"));
    try {
      const t = await api(`/plan?applySet=${encodeURIComponent(set.value || "ui")}`, {
        method: "POST", body: area.value, text: true,
        headers: { "Content-Type": "application/yaml", Accept: "text/plain" },
      });
      const cls = (l) => (/^\s*\+/.test(l) ? "op-add" : /^\s*-/.test(l) ? "op-del" : /^\s*~/.test(l) ? "op-mod" : "");
      out.replaceChildren(h("pre", { class: "plan" }, t.split("\n").map((l) => h("div", { class: cls(l) }, l || "\u00a0"))));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      out.replaceChildren(h("div", { class: "error" }, e.message));
    }
  });
  show(h("h1", {}, "Plan preview"),
    h("p", { class: "muted" }, "Paste manifests; the plan is what `clusto plan` would print. Nothing is written."),
    form, out);
}

// --- routing -------------------------------------------------------------------

async function route() {
  const path = decodeURIComponent(location.pathname.replace(/\/+$/, ""));
  const params = new URLSearchParams(location.search);
  let render;
  let m;
  if (path === "/ui") render = home;
  else if (path === "/ui/search") render = () => search(params.get("q") || "");
  else if (path === "/ui/plan") { planPage(); return; }
  else if ((m = path.match(/^\/ui\/racks\/(.+)$/))) render = () => rack(m[1], params.get("side") === "rear" ? "rear" : "front");
  else if ((m = path.match(/^\/ui\/entities\/(.+)$/))) render = () => entity(m[1]);
  else { show(h("div", { class: "error" }, `no page at ${path}`)); return; }
  const draw = async () => {
    try {
      const rv = await render();
      document.body.dataset.rendered = String(rv);
      follow(rv, draw);
    } catch (e) {
      show(h("div", { class: "error" }, e.message));
    }
  };
  await draw();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem("clusto-token", document.getElementById("token-input").value.trim());
    document.getElementById("token").hidden = true;
    route();
  });
  route();
});
