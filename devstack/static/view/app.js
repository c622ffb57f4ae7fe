// The live view: one EventSource on /events; every "state" event is the whole picture.
// Text from the stores (ids, reasons, descriptions) only ever goes in through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let openJourney = null;   // the key whose timeline is shown, refreshed with every picture
let drawnMap = "";
let mapCount = 0;

if (window.mermaid) mermaid.initialize({ startOnLoad: false, securityLevel: "strict", flowchart: { htmlLabels: true } });

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function age(seconds) {
  if (seconds == null) return "-";
  if (seconds >= 3600) return `${(seconds / 3600).toFixed(1)} h`;
  if (seconds >= 60) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.round(seconds)} s`;
}

function fillRows(tbody, rows, columns) {
  tbody.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    tr.dataset.key = item.id;
    tr.dataset.status = columns.status(item);
    columns.cells(item).forEach(([text, cls]) => cell(tr, text, cls));
    tr.addEventListener("click", () => showJourney(item.id));
    tbody.appendChild(tr);
  }
}

function renderDeliveries(rows) {
  fillRows($("deliveries").tBodies[0], rows, {
    status: (d) => d.status,
    cells: (d) => [[d.id], [d.status + (d.reason ? ` (${d.reason})` : ""), `status-${d.status}`], [d.hop],
                   [age(d.ageSeconds)]],
  });
}

function renderFiles(rows) {
  fillRows($("files").tBodies[0], rows, {
    status: (f) => f.state,
    cells: (f) => [[f.name], [f.state + (f.groupStatus ? ` ${f.groupStatus}` : ""), `status-${f.state}`], [f.hop],
                   [age(f.ageSeconds)]],
  });
}

async function renderMap(text) {
  if (!text || text === drawnMap || !window.mermaid) return;
  drawnMap = text;
  try {
    const { svg } = await mermaid.render(`map-svg-${++mapCount}`, text);
    $("map").innerHTML = svg;  // Mermaid's own output, sanitized by it (securityLevel strict)
  } catch (err) {
    $("map").textContent = `the map could not be drawn: ${err}`;
  }
}

async function showJourney(key) {
  openJourney = key;
  $("journey-panel").hidden = false;
  $("journey-key").textContent = key;
  const list = $("journey");
  const response = await fetch(`/api/journey?key=${encodeURIComponent(key)}`);
  const body = await response.json();
  if (openJourney !== key) return;
  list.replaceChildren();
  if (!response.ok) {
    const li = document.createElement("li");
    li.textContent = body.detail || body.title;
    list.appendChild(li);
    return;
  }
  for (const hop of body.hops) {
    const li = document.createElement("li");
    li.className = ["retry", "deadLetter", "compensation", "error"].filter((m) => hop[m])
      .map((m) => (m === "deadLetter" ? "dead" : m)).join(" ");
    li.textContent = `${("+" + Math.round(hop.offsetMs) + " ms").padStart(10)} ${(hop.durationMs.toFixed(1) + " ms").padStart(10)}  `
      + `${hop.service.padEnd(16)} ${"  ".repeat(hop.depth)}${hop.text}`;
    list.appendChild(li);
  }
  if (body.otherTraces.length) {
    // e.g. a resubmission answered 409, or a dead letter remediation handled in a trace of its own
    const li = document.createElement("li");
    li.textContent = `also named by ${body.otherTraces.length} other trace(s): ${body.otherTraces.join(", ")}`;
    list.appendChild(li);
  }
}

async function resubmit(letter) {
  if (!window.confirm(`Resubmit ${letter.messageType || "the message"} ${letter.id} to ${letter.entity}?`)) return;
  const response = await fetch(`/api/deadletters/${encodeURIComponent(letter.id)}/resubmit`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ confirm: letter.id }),
  });
  const body = await response.json();
  window.alert(response.ok ? `Resubmitted as ${body.as}` : `Not resubmitted: ${body.detail}`);
}

function renderDeadLetters(dl) {
  const counts = $("dl-counts");
  counts.replaceChildren();
  for (const c of dl.byEntityAndReason) {
    const span = document.createElement("span");
    span.textContent = `${c.entity}: ${c.reason} × ${c.count}`;
    counts.appendChild(span);
  }
  if (dl.entities) {
    // From the administration API: what sits in each entity's own dead-letter queue (most
    // forward theirs to deadletter, so these stay empty unless forwarding itself failed).
    const own = Object.entries(dl.entities).filter(([, n]) => n > 0);
    const summary = document.createElement("span");
    summary.className = "entities";
    summary.textContent = own.length ? own.map(([entity, n]) => `${entity}/$DeadLetterQueue: ${n}`).join(", ")
      : `the ${Object.keys(dl.entities).length} entities' own dead-letter queues: empty`;
    counts.appendChild(summary);
  }
  const tbody = $("deadletters").tBodies[0];
  tbody.replaceChildren();
  for (const x of dl.letters) {
    const tr = document.createElement("tr");
    tr.dataset.id = x.id;
    cell(tr, x.state, `status-${x.state}`);
    cell(tr, x.entity);
    cell(tr, x.reason).title = x.description || "";
    cell(tr, x.correlationId);
    cell(tr, x.messageType);
    cell(tr, [x.outcome, x.why].filter(Boolean).join(": "));
    const action = cell(tr, "");
    if (x.state !== "undecided" && x.outcome !== "resubmitted" && x.outcome !== "purged") {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "resubmit";
      button.addEventListener("click", () => resubmit(x));
      action.appendChild(button);
    }
    tbody.appendChild(tr);
  }
}

function renderChart(points) {
  const svg = $("chart");
  const W = 600, H = 160, pad = 4;
  const rate = Math.max(1, ...points.map((p) => p.perSecond));
  const ms = Math.max(1, ...points.map((p) => p.p99 || 0));
  const x = (i) => pad + (i * (W - 2 * pad)) / Math.max(points.length - 1, 1);
  const line = (values, top, cls) => {
    const d = values.map((v, i) => (v == null ? null : `${x(i).toFixed(1)},${(H - pad - (v / top) * (H - 2 * pad)).toFixed(1)}`))
      .filter(Boolean).join(" ");
    return `<polyline class="${cls}" fill="none" stroke-width="2" points="${d}"/>`;
  };
  svg.innerHTML = line(points.map((p) => p.perSecond), rate, "rate") + line(points.map((p) => p.p50), ms, "p50")
    + line(points.map((p) => p.p99), ms, "p99");
  // Text outside the stretched SVG, where it keeps its shape.
  $("chart-scale").textContent = `scale: ${rate.toFixed(1)} invocations/s and ${Math.round(ms)} ms at the top; `
    + "5 minutes ago on the left, now on the right";
  svg.querySelectorAll(".rate").forEach((e) => e.setAttribute("stroke", "#1565c0"));
  svg.querySelectorAll(".p50").forEach((e) => e.setAttribute("stroke", "#2e7d32"));
  svg.querySelectorAll(".p99").forEach((e) => e.setAttribute("stroke", "#c62828"));
}

function render(picture) {
  window.pictures = (window.pictures || 0) + 1;
  $("updated").textContent = `picture ${picture.version} at ${picture.at.slice(11, 19)} UTC`;
  const warnings = $("warnings");
  warnings.replaceChildren();
  for (const w of picture.warnings) {
    const div = document.createElement("div");
    div.textContent = w;
    warnings.appendChild(div);
  }
  renderDeliveries(picture.deliveries);
  renderFiles(picture.files);
  renderDeadLetters(picture.deadLetters);
  renderChart(picture.chart);
  renderMap(picture.map);
  if (openJourney) showJourney(openJourney);
}

function connect() {
  const badge = $("connection");
  const events = new EventSource("/events");  // reconnects by itself (retry: 1000 from the server)
  events.onopen = () => { badge.dataset.state = "live"; badge.textContent = "live"; };
  events.onerror = () => { badge.dataset.state = "reconnecting"; badge.textContent = "reconnecting…"; };
  events.addEventListener("state", (e) => render(JSON.parse(e.data)));
}

$("journey-close").addEventListener("click", () => { openJourney = null; $("journey-panel").hidden = true; });
connect();
