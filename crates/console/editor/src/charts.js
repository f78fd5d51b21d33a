/*! The bundled package uPlot is under the MIT License:

The MIT License (MIT)

Copyright (c) 2022 Leon Sorokin

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
THE SOFTWARE.
*/
// everynode console: CPU and memory charts. Every <div data-usage-chart data-source=URL> gets
// two uPlot charts (CPU in millicores, memory in MiB), one line per pod or node, over the last
// 15 minutes, fetched from the console's URL and again every 15 seconds, and a table of each
// line's latest values. Bundled by esbuild at build time; nothing is fetched from elsewhere.
import uPlot from "uplot";
import css from "uplot/dist/uPlot.min.css";

const REFRESH_MS = 15000;
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777",
  "#65a30d", "#ea580c", "#4f46e5", "#059669", "#b91c1c", "#0d9488", "#9333ea", "#ca8a04",
  "#1d4ed8", "#be123c", "#15803d", "#c2410c", "#6d28d9"];

function addStyle() {
  const style = document.createElement("style");
  style.textContent = css;
  document.head.appendChild(style);
}

// The series' points joined on one time axis: uPlot's columns [times, s1, s2, ...] with null
// where a series has no point at a time.
function columns(series, pick) {
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times];
  for (const s of series) {
    const column = new Array(times.length).fill(null);
    for (const p of s.points) column[index.get(p[0])] = pick(p);
    data.push(column);
  }
  return data;
}

function options(title, unit, series, width) {
  return {
    title, width, height: 220,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, unit === "m" ? 10 : 1)] } },
    axes: [{}, { label: unit === "m" ? "millicores" : "MiB", size: 60 }],
    series: [{}].concat(series.map((s, i) => ({
      label: s.name, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true,
      value: (u, v) => (v == null ? "–" : v.toFixed(unit === "m" ? 0 : 1) + (unit === "m" ? "m" : " MiB")),
    }))),
    legend: { show: series.length <= 8 },
  };
}

const cpu = (p) => p[1] * 1000;
const memory = (p) => p[2] / (1024 * 1024);

function fillTable(box, series) {
  const body = box.querySelector("table.usage-now tbody");
  body.replaceChildren(...series.map((s) => {
    const last = s.points[s.points.length - 1];
    const row = document.createElement("tr");
    row.dataset.name = s.name;
    row.dataset.cpuMillicores = last ? cpu(last).toFixed(0) : "";
    row.dataset.memoryBytes = last ? String(last[2]) : "";
    for (const text of [s.name, last ? cpu(last).toFixed(0) + "m" : "–", last ? memory(last).toFixed(1) + " MiB" : "–"]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    return row;
  }));
}

function draw(box, data) {
  const plots = box.querySelector(".usage-plots");
  const note = box.querySelector(".usage-note");
  const series = data.series.filter((s) => s.points.length > 0);
  if (series.length === 0) {
    box.dataset.state = "empty";
    // The first points come after two readings: ask again soon.
    setTimeout(() => refresh(box), 3000);
    return;
  }
  note.textContent = data.total > series.length
    ? `The ${series.length} busiest of ${data.total}, by their latest CPU.` : "";
  const width = Math.max(320, Math.min(plots.clientWidth || 900, 1200) / 2 - 16);
  const names = series.map((s) => s.name).join("\n");
  // The same lines: new data into the charts; other lines: new charts.
  if (box.charts && box.names === names) {
    box.charts[0].setData(columns(series, cpu));
    box.charts[1].setData(columns(series, memory));
  } else {
    (box.charts || []).forEach((c) => c.destroy());
    plots.replaceChildren();
    box.charts = [
      new uPlot(options("CPU", "m", series, width), columns(series, cpu), plots),
      new uPlot(options("Memory", "MiB", series, width), columns(series, memory), plots),
    ];
    box.names = names;
  }
  fillTable(box, series);
  box.dataset.state = "ready";
  box.dataset.series = String(series.length);
}

async function refresh(box) {
  try {
    const response = await fetch(box.dataset.source, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const data = await response.json();
    if (!response.ok) {
      box.dataset.state = "error";
      box.querySelector(".usage-note").textContent = data.error || `HTTP ${response.status}`;
      return;
    }
    draw(box, data);
  } catch (e) {
    box.dataset.state = "error";
  }
}

addStyle();
document.querySelectorAll("[data-usage-chart]").forEach((box) => {
  refresh(box);
  setInterval(() => { if (!document.hidden) refresh(box); }, REFRESH_MS);
});
