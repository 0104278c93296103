// StreamLake console: draws the charts (uPlot) and refreshes numbers from the JSON API.
// Invariant: data from the API is written with textContent or as chart data only, never as HTML.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const intervalMs = Math.max(500, 1000 * Number(body.dataset.interval || 2));
  const palette = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];

  function setText(root, field, value) {
    for (const node of root.querySelectorAll('[data-field="' + field + '"]')) {
      node.textContent = value === null || value === undefined ? "-" : String(value);
    }
  }

  function fmtTime(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    return new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  }

  function showFrame(view) {
    setText(document, "sampled_at", fmtTime(view.sampled_at));
    setText(document, "samples", view.samples);
    const banner = document.querySelector('.banner[data-field="error"]');
    if (banner) {
      banner.textContent = view.error || "";
      banner.hidden = !view.error;
    }
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  // -- charts ----------------------------------------------------------------------------------

  const charts = new Map(); // element -> { plot, key }

  function compact(v) {
    if (v === null || v === undefined) return "";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    return String(Math.round(v * 100) / 100);
  }

  function drawChart(el, title, labels, data, firstColour) {
    const key = labels.join("\u0000");
    const known = charts.get(el);
    if (known && known.key === key) {
      known.plot.setData(data);
      return;
    }
    if (known) known.plot.destroy();
    const width = Math.max(el.clientWidth || 320, 200);
    const opts = {
      title: title,
      width: width,
      height: el.classList.contains("wide") ? 220 : 150,
      legend: { live: false },
      scales: { x: { time: true } },
      axes: [{}, { size: 48, values: (u, ticks) => ticks.map(compact) }],
      series: [{}].concat(labels.map((label, i) => ({
        label: label, stroke: palette[(i + (firstColour || 0)) % palette.length], width: 1.5, points: { show: false },
      }))),
    };
    const plot = new uPlot(opts, data, el);
    charts.set(el, { plot: plot, key: key });
  }

  // -- overview --------------------------------------------------------------------------------

  function showCard(card, stream) {
    for (const name of ["records_in", "forwarded", "dropped", "dlq"]) setText(card, name, stream.totals[name]);
    setText(card, "lag", stream.lag);
    setText(card, "dlq_depth", stream.dlq_depth);
    for (const cell of card.querySelectorAll("[data-class]")) {
      cell.textContent = String(stream.classes[cell.dataset.class] || 0);
    }
    if (stream.lake) {
      setText(card, "lake_newest", stream.lake.newest_event_time);
      setText(card, "lake_rows", stream.lake.rows);
      setText(card, "lake_table", stream.lake.table);
      setText(card, "lake_commit", stream.lake.last_commit);
    }
    const r = stream.rates;
    const volume = card.querySelector('[data-chart="volume"]');
    if (volume) drawChart(volume, "in / forwarded per second", ["in/s", "forwarded/s"], [r.t, r.records_in, r.forwarded]);
    const problems = card.querySelector('[data-chart="problems"]');
    if (problems) drawChart(problems, "dropped / DLQ per second", ["dropped/s", "DLQ/s"], [r.t, r.dropped, r.dlq], 2);
  }

  async function refreshOverview() {
    const view = await getJson("/api/overview");
    showFrame(view);
    for (const stream of view.streams) {
      for (const card of document.querySelectorAll(".card[data-stream]")) {
        if (card.dataset.stream === stream.name) showCard(card, stream);
      }
    }
  }

  // -- stream ----------------------------------------------------------------------------------

  function fillTable(tbody, rows) {
    tbody.replaceChildren();
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const cell of row) {
        const td = document.createElement("td");
        td.textContent = cell === null || cell === undefined ? "-" : String(cell);
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }

  async function refreshStream() {
    const name = body.dataset.stream;
    const view = await getJson("/api/stream/" + encodeURIComponent(name));
    showFrame(view);
    for (const field of ["records_in", "forwarded", "dropped", "dlq"]) setText(document, field, view.totals[field]);
    setText(document, "lag", view.lag);
    setText(document, "dlq_depth", view.dlq_depth);
    setText(document, "gaps_opened", view.gaps.opened);
    setText(document, "gaps_filled", view.gaps.filled);
    setText(document, "gaps_forgotten", view.gaps.forgotten);
    if (view.group) {
      setText(document, "group_state", view.group.state);
      setText(document, "members", view.group.members.length);
    }
    const parts = document.querySelector("#partitions tbody");
    if (parts) {
      fillTable(parts, view.partitions.map((p) => [p.role, p.topic, p.partition, p.committed, p.end, p.lag, p.owner]));
    }
    const levels = view.levels;
    const lag = document.querySelector('[data-chart="lag"]');
    if (lag) drawChart(lag, "consumer lag and DLQ depth", ["lag", "DLQ depth"], [levels.t, levels.lag, levels.dlq_depth]);
    const gaps = document.querySelector('[data-chart="gaps"]');
    if (gaps) {
      drawChart(gaps, "gaps", ["opened", "filled", "open now"],
        [levels.t, levels.gaps_opened, levels.gaps_filled, levels.gaps_open]);
    }
    const dlq = document.querySelector('[data-chart="dlq-rates"]');
    if (dlq) {
      const reasons = Object.keys(view.dlq_rates.reasons);
      if (reasons.length) {
        drawChart(dlq, "DLQ records per second by reason", reasons,
          [view.dlq_rates.t].concat(reasons.map((r) => view.dlq_rates.reasons[r])));
      }
    }
  }

  // -- DLQ browser: redrive --------------------------------------------------------------------

  function currentFilter() {
    const form = document.getElementById("dlq-filter");
    const params = new URLSearchParams(window.location.search);
    const filter = {};
    for (const name of ["stream", "reason", "stage", "since", "until", "key"]) {
      const value = params.has(name) ? params.get(name) : (form.elements[name] ? form.elements[name].value : "");
      filter[name] = value;
    }
    if (!filter.stream && form.elements.stream) filter.stream = form.elements.stream.value;
    return filter;
  }

  let lastDryRun = null;
  let lastFilter = null; // the filter of that dry run: execute sends exactly it

  async function postRedrive(payload, token) {
    const headers = { "Content-Type": "application/json", "X-StreamLake-Console": "redrive" };
    if (token) headers["X-StreamLake-Token"] = token;
    const response = await fetch("/api/dlq/redrive", { method: "POST", headers: headers, body: JSON.stringify(payload) });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  function showError(message) {
    const box = document.getElementById("redrive-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function showReport(report) {
    const box = document.getElementById("redrive-result");
    for (const field of ["redrive_id", "mode", "scanned", "matched", "sent", "refused_attempt_cap", "refused_no_origin"]) {
      setText(box, field, report[field]);
    }
    setText(box, "verb", report.mode === "dry-run" ? "would send" : "sent");
    const list = document.getElementById("redrive-destinations");
    list.replaceChildren();
    for (const [dest, n] of Object.entries(report.by_destination)) {
      const li = document.createElement("li");
      li.textContent = "→ " + dest + ": " + n;
      list.appendChild(li);
    }
    box.hidden = false;
    document.getElementById("redrive-execute").hidden = report.mode !== "dry-run" || report.sent === 0;
  }

  function setupRedrive() {
    const dry = document.getElementById("redrive-dry-run");
    const execute = document.getElementById("redrive-execute");
    const confirm = document.getElementById("redrive-confirm");
    dry.addEventListener("click", async () => {
      showError("");
      confirm.hidden = true;
      dry.disabled = true;
      try {
        lastFilter = currentFilter();
        lastDryRun = await postRedrive(Object.assign({}, lastFilter, { mode: "dry-run" }));
        showReport(lastDryRun);
      } catch (err) {
        showError(err.message);
      } finally {
        dry.disabled = false;
      }
    });
    execute.addEventListener("click", () => {
      if (!lastDryRun) return;
      setText(confirm, "confirm_count", lastDryRun.sent);
      setText(confirm, "confirm_id", lastDryRun.redrive_id);
      confirm.hidden = false;
    });
    document.getElementById("redrive-confirm-no").addEventListener("click", () => { confirm.hidden = true; });
    document.getElementById("redrive-confirm-yes").addEventListener("click", async () => {
      showError("");
      const yes = document.getElementById("redrive-confirm-yes");
      yes.disabled = true;
      try {
        const token = document.getElementById("redrive-token").value;
        const report = await postRedrive(Object.assign({}, lastFilter, {
          mode: "execute", confirm: true, redrive_id: lastDryRun.redrive_id,
        }), token);
        confirm.hidden = true;
        showReport(report);
      } catch (err) {
        showError(err.message);
      } finally {
        yes.disabled = false;
      }
    });
  }

  // -- refresh loop ----------------------------------------------------------------------------

  function loop(refresh) {
    const tick = async () => {
      try {
        await refresh();
      } catch (err) {
        const banner = document.querySelector('.banner[data-field="error"]');
        if (banner) {
          banner.textContent = "console: " + err.message;
          banner.hidden = false;
        }
      }
      window.setTimeout(tick, intervalMs);
    };
    tick();
  }

  if (page === "overview") loop(refreshOverview);
  if (page === "stream") loop(refreshStream);
  if (page === "dlq") setupRedrive();
})();
