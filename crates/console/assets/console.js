// everynode console: the little interactivity the server-rendered pages need.
// Live regions (server-sent events), wizard steps and rows, the YAML preview, field errors,
// file upload into the editor, and following logs. No framework, no build step.
"use strict";

// Elements with data-live="/ui/...": their content is replaced by every event of that stream.
function startLiveRegions() {
  document.querySelectorAll("[data-live]").forEach((el) => {
    const source = new EventSource(el.dataset.live);
    source.onmessage = (event) => {
      el.innerHTML = event.data;
      el.dataset.updates = String(Number(el.dataset.updates || "0") + 1);
      // The rows are new: filter, sort and page them as the user asked.
      const table = el.closest("table");
      if (table) applyTableState(table);
      el.querySelectorAll("table").forEach(enhanceTable);
      if (el.querySelector("#placement-grid")) applyPlacement();
    };
  });
}

// Lists (DaemonSets, pods, nodes): a filter box, sorting by a header click, and pages of 50.
// The tools live outside any live region, so a refresh keeps what the user typed.
const TABLES = ["daemonsets", "pods", "nodes", "events"];
const PAGE_SIZE = 50;
const tableState = {};

function cellText(row, index) {
  const cell = row.cells[index];
  return cell ? cell.textContent.trim() : "";
}

function compareCells(a, b) {
  const x = Number(a), y = Number(b);
  if (a !== "" && b !== "" && !Number.isNaN(x) && !Number.isNaN(y)) return x - y;
  return a.localeCompare(b, undefined, { numeric: true });
}

function applyTableState(table) {
  const state = tableState[table.id];
  const body = table.tBodies[0];
  if (!state || !body) return;
  const rows = Array.from(body.rows);
  if (state.col >= 0) {
    rows.sort((a, b) => compareCells(cellText(a, state.col), cellText(b, state.col)) * state.dir);
    rows.forEach((r) => body.appendChild(r));
  }
  const needle = state.filter.toLowerCase();
  const matching = rows.filter((r) => r.textContent.toLowerCase().includes(needle));
  const pages = Math.max(1, Math.ceil(matching.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  rows.forEach((r) => { r.hidden = true; });
  matching.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE).forEach((r) => { r.hidden = false; });
  const tools = document.querySelector(`.table-tools[data-for="${table.id}"]`);
  if (tools) {
    tools.querySelector(".count").textContent =
      `${matching.length} of ${rows.length}` + (pages > 1 ? ` · page ${state.page + 1} of ${pages}` : "");
    tools.querySelector(".prev").disabled = state.page === 0;
    tools.querySelector(".next").disabled = state.page >= pages - 1;
  }
}

function enhanceTable(table) {
  if (!TABLES.includes(table.id)) return;
  tableState[table.id] = tableState[table.id] || { filter: "", col: -1, dir: 1, page: 0 };
  if (!document.querySelector(`.table-tools[data-for="${table.id}"]`)) {
    const live = table.closest("[data-live]");
    const anchor = live && !table.contains(live) ? live : table;
    const tools = document.createElement("div");
    tools.className = "table-tools";
    tools.dataset.for = table.id;
    tools.innerHTML = '<input type="search" placeholder="Filter" aria-label="Filter"> ' +
      '<button type="button" class="prev">Previous</button> <button type="button" class="next">Next</button> ' +
      '<span class="count muted"></span>';
    anchor.insertAdjacentElement("beforebegin", tools);
    const current = () => document.getElementById(table.id);
    tools.querySelector("input").addEventListener("input", (e) => {
      tableState[table.id].filter = e.target.value;
      tableState[table.id].page = 0;
      applyTableState(current());
    });
    tools.querySelector(".prev").addEventListener("click", () => { tableState[table.id].page -= 1; applyTableState(current()); });
    tools.querySelector(".next").addEventListener("click", () => { tableState[table.id].page += 1; applyTableState(current()); });
  }
  // A live region may have replaced the whole table: its new headers need the handlers.
  if (!table.dataset.sortable) {
    sortableHeaders(table);
    table.dataset.sortable = "1";
  }
  applyTableState(table);
}

function sortableHeaders(table) {
  table.querySelectorAll("thead th").forEach((th, index) => {
    th.classList.add("sortable");
    th.addEventListener("click", () => {
      const state = tableState[table.id];
      state.dir = state.col === index ? -state.dir : 1;
      state.col = index;
      applyTableState(document.getElementById(table.id));
    });
  });
}

// <pre data-follow="/ui/.../stream">: appends each event's text as a line.
function startFollowedLogs() {
  document.querySelectorAll("[data-follow]").forEach((el) => {
    const source = new EventSource(el.dataset.follow);
    source.onmessage = (event) => {
      el.textContent += event.data + "\n";
      el.scrollTop = el.scrollHeight;
    };
    source.addEventListener("end", () => source.close());
  });
}

// Placement grid: a reason filter (groups), a node filter (cells), and a click showing one
// node. The state lives here, so a live refresh of the grid keeps it.
const placement = { reason: "", node: "", selected: "" };

function applyPlacement() {
  const grid = document.getElementById("placement-grid");
  if (!grid) return;
  let shown = 0;
  const needle = placement.node.toLowerCase();
  grid.querySelectorAll("section.group").forEach((section) => {
    const visible = !placement.reason || section.dataset.group === placement.reason;
    section.hidden = !visible;
    if (!visible) return;
    if (needle) {
      section.querySelectorAll("i.c").forEach((cell) => {
        cell.hidden = !cell.title.toLowerCase().includes(needle);
        if (!cell.hidden) shown += 1;
      });
    } else {
      shown += Number(section.dataset.count);
    }
  });
  const count = document.getElementById("placement-shown");
  if (count) count.textContent = `${shown} node${shown === 1 ? "" : "s"} shown`;
  const cell = placement.selected && grid.querySelector(`i.c[title="${CSS.escape(placement.selected)}"]`);
  if (cell) showNode(cell); else if (placement.selected) hideNode();
}

function hideNode() {
  const box = document.getElementById("placement-detail");
  if (box) box.hidden = true;
}

// The detail box of one node: its reason and message, its pod and revision.
function showNode(cell) {
  const box = document.getElementById("placement-detail");
  if (!box) return;
  document.querySelectorAll("i.c.selected").forEach((c) => c.classList.remove("selected"));
  cell.classList.add("selected");
  placement.selected = cell.title;
  const section = cell.closest("section.group");
  const ns = box.closest("main").querySelector("[data-namespace]");
  const entries = [
    ["Node", cell.title, "/ui/nodes/" + encodeURIComponent(cell.title)],
    ["State", cell.classList[1]],
    ["Reason", section ? section.dataset.group : ""],
    ["Message", cell.dataset.m || ""],
    ["Pod", cell.dataset.p || "none",
      cell.dataset.p && ns ? `/ui/pods/${ns.dataset.namespace}/${cell.dataset.p}/logs` : ""],
    ["Revision", cell.dataset.v || ""],
  ];
  const list = document.createElement("dl");
  for (const [term, value, href] of entries) {
    if (!value) continue;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.dataset.field = term.toLowerCase();
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = value;
      dd.appendChild(a);
    } else {
      dd.textContent = value;
    }
    list.append(dt, dd);
  }
  box.replaceChildren(list);
  box.hidden = false;
}

function wirePlacement() {
  const reason = document.getElementById("placement-reason");
  const node = document.getElementById("placement-node");
  if (!reason || !node) return;
  reason.addEventListener("change", () => { placement.reason = reason.value; applyPlacement(); });
  node.addEventListener("input", () => { placement.node = node.value; applyPlacement(); });
  document.getElementById("placement-live").addEventListener("click", (event) => {
    const cell = event.target.closest("i.c");
    if (cell && cell.closest("#placement-grid")) showNode(cell);
  });
  applyPlacement();
}

// Wizard: one step shown at a time; tabs and Next/Back move between them.
function showStep(wizard, index) {
  const steps = wizard.querySelectorAll(".step");
  const tabs = wizard.querySelectorAll(".tabs [data-step]");
  index = Math.max(0, Math.min(index, steps.length - 1));
  steps.forEach((s, i) => s.classList.toggle("active", i === index));
  tabs.forEach((t, i) => t.classList.toggle("active", i === index));
  wizard.dataset.step = String(index);
}

function nextIndex(container) {
  const n = Number(container.dataset.next || container.children.length);
  container.dataset.next = String(n + 1);
  return n;
}

// A button with data-add="template-id" data-into="container-id" appends a copy of the template,
// with __i__ replaced by a fresh index (and __c__ by the owning container's index, when given).
function addRow(button) {
  const template = document.getElementById(button.dataset.add);
  const into = document.getElementById(button.dataset.into);
  const index = nextIndex(into);
  let html = template.innerHTML.replaceAll("__i__", String(index));
  if (button.dataset.c !== undefined) html = html.replaceAll("__c__", button.dataset.c);
  into.insertAdjacentHTML("beforeend", html);
  const wizard = button.closest("form");
  if (wizard) schedulePreview(wizard);
}

let previewTimer = null;
function schedulePreview(form) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => preview(form), 250);
}

async function preview(form) {
  const target = document.getElementById("preview");
  if (!target) return;
  const response = await fetch("/ui/create/preview", { method: "POST", body: new URLSearchParams(new FormData(form)) });
  const answer = await response.json();
  target.textContent = answer.yaml || answer.message || "";
}

// An edit opens the wizard filled from the object: data-fill holds [name, value] pairs, and
// the rows they need (containers, ports, variables, volumes, tolerations...) are added first.
const ROWS = [
  [/^c\.(\d+)\.port\.\d+\./, (m) => `button[data-add=tpl-port][data-c="${m[1]}"]`],
  [/^c\.(\d+)\.env\.\d+\./, (m) => `button[data-add=tpl-env][data-c="${m[1]}"]`],
  [/^c\.(\d+)\.vol\.\d+\./, (m) => `button[data-add=tpl-vol][data-c="${m[1]}"]`],
  [/^svc\.port\.\d+\./, () => "button[data-add=tpl-svc-port]"],
  [/^tol\.\d+\./, () => "button[data-add=tpl-tol]"],
  [/^na\.\d+\./, () => "button[data-add=tpl-na]"],
  [/^pa\.\d+\./, () => "button[data-add=tpl-pa]"],
];

function fillWizard(form) {
  if (!form.dataset.fill) return;
  const pairs = JSON.parse(form.dataset.fill);
  const kinds = Object.fromEntries(pairs.filter(([k]) => /^c\.\d+\.kind$/.test(k)));
  const field = (name) => form.querySelector(`[name="${CSS.escape(name)}"]`);
  for (const [name, value] of pairs) {
    // Rows are numbered in order, so adding until the field exists adds exactly the rows needed.
    for (let tries = 0; !field(name) && tries < 100; tries += 1) {
      const container = name.match(/^c\.(\d+)\./);
      let button = null;
      if (container && !form.querySelector(`fieldset.container[data-container="${container[1]}"]`)) {
        const init = kinds[`c.${container[1]}.kind`] === "init";
        button = document.querySelector(`button[data-add=${init ? "tpl-init" : "tpl-container"}]`);
      } else {
        const row = ROWS.map(([pattern, pick]) => [name.match(pattern), pick]).find(([m]) => m);
        if (row) button = form.querySelector(row[1](row[0]));
      }
      if (!button) break;
      addRow(button);
    }
    const input = field(name);
    if (!input) continue;
    if (input.type === "checkbox") input.checked = value === "on" || value === "true";
    else input.value = value;
  }
}

function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((e) => e.remove());
  const box = form.querySelector(".form-errors");
  if (box) { box.innerHTML = ""; box.hidden = true; }
}

function showErrors(form, answer) {
  const box = form.querySelector(".form-errors");
  const unplaced = [];
  for (const err of answer.errors || []) {
    const input = err.input && form.querySelector(`[name="${CSS.escape(err.input)}"]`);
    if (input) {
      const note = document.createElement("span");
      note.className = "field-error";
      note.textContent = (err.field ? err.field + ": " : "") + err.message;
      input.insertAdjacentElement("afterend", note);
      const step = input.closest(".step");
      if (step) showStep(form, Array.from(form.querySelectorAll(".step")).indexOf(step));
    } else {
      unplaced.push((err.field ? err.field + ": " : "") + err.message);
    }
  }
  if (box) {
    box.hidden = false;
    box.innerHTML = "";
    const head = document.createElement("p");
    head.textContent = answer.message;
    box.appendChild(head);
    const list = document.createElement("ul");
    unplaced.forEach((text) => { const li = document.createElement("li"); li.textContent = text; list.appendChild(li); });
    box.appendChild(list);
  }
}

// Forms with data-json-submit post with fetch; the answer is {location} or {message, errors}.
async function submitJson(form) {
  clearErrors(form);
  const response = await fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)) });
  const answer = await response.json();
  if (answer.location) { window.location = answer.location; return; }
  if (answer.preview) { showChangePreview(form, answer); return; }
  showErrors(form, answer);
}

// The first press of a form's submit button shows what the write does to the nodes; the
// second, with the previewed submission's digest, confirms it. Any change asks again.
function showChangePreview(form, answer) {
  const box = form.querySelector("[data-preview-box]");
  box.innerHTML = answer.preview;
  box.hidden = false;
  form.querySelector("input[name=previewed]").value = answer.previewed;
  const button = form.querySelector("button[type=submit][data-confirm-label]");
  if (button) button.textContent = button.dataset.confirmLabel;
  box.scrollIntoView({ block: "nearest" });
}

function forgetChangePreview(form) {
  const box = form.querySelector("[data-preview-box]");
  const digest = form.querySelector("input[name=previewed]");
  if (!box || !digest || !digest.value) return;
  box.hidden = true;
  digest.value = "";
  const button = form.querySelector("button[type=submit][data-label]");
  if (button) button.textContent = button.dataset.label;
}

// Pages with a YAML editor load the bundled editor (CodeMirror), which takes over the text area.
function loadEditor() {
  if (!document.querySelector("textarea[data-editor]")) return;
  const script = document.createElement("script");
  script.src = "/ui/assets/editor.js";
  document.head.appendChild(script);
}

// Pages with usage charts load the bundled charts (uPlot), which draw them.
function loadCharts() {
  if (!document.querySelector("[data-usage-chart]")) return;
  const script = document.createElement("script");
  script.src = "/ui/assets/charts.js";
  document.head.appendChild(script);
}

function wire() {
  loadEditor();
  loadCharts();
  startLiveRegions();
  document.querySelectorAll("table").forEach(enhanceTable);
  startFollowedLogs();
  wirePlacement();
  document.querySelectorAll("form.wizard").forEach((wizard) => {
    fillWizard(wizard);
    showStep(wizard, 0);
    wizard.addEventListener("input", () => { schedulePreview(wizard); forgetChangePreview(wizard); });
    wizard.addEventListener("change", () => { schedulePreview(wizard); forgetChangePreview(wizard); });
    preview(wizard);
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const wizard = button.closest("form.wizard");
    if (button.dataset.step !== undefined && wizard) {
      event.preventDefault();
      showStep(wizard, Number(button.dataset.step));
    } else if (button.dataset.move && wizard) {
      event.preventDefault();
      showStep(wizard, Number(wizard.dataset.step || "0") + Number(button.dataset.move));
    } else if (button.dataset.add) {
      event.preventDefault();
      addRow(button);
    } else if (button.dataset.remove) {
      event.preventDefault();
      const row = button.closest(button.dataset.remove);
      const form = button.closest("form");
      if (row) row.remove();
      if (form) schedulePreview(form);
    } else if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
      event.preventDefault();
    }
  });
  document.querySelectorAll("form[data-json-submit]").forEach((form) => {
    form.addEventListener("submit", (event) => { event.preventDefault(); submitJson(form); });
  });
  // <input type=file data-load-into="textarea-id">: the chosen file's text goes into the editor.
  document.querySelectorAll("input[type=file][data-load-into]").forEach((input) => {
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (!file) return;
      const area = document.getElementById(input.dataset.loadInto);
      area.value = await file.text();
      // The editor, when it has taken over the text area, follows it.
      area.dispatchEvent(new Event("everynode:load"));
    });
  });
  // The name field says what is wrong while typing (63-character DNS label).
  document.querySelectorAll("input[data-dns-label]").forEach((input) => {
    const hint = document.createElement("span");
    hint.className = "field-error";
    input.insertAdjacentElement("afterend", hint);
    const check = () => {
      const v = input.value;
      hint.textContent =
        v.length > 63 ? `must be no more than 63 characters (${v.length})`
        : v && !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(v)
          ? "lowercase letters, digits and '-', starting and ending with a letter or digit" : "";
    };
    input.addEventListener("input", check);
  });
}

document.addEventListener("DOMContentLoaded", wire);
