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
    };
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
  showErrors(form, answer);
}

function wire() {
  startLiveRegions();
  startFollowedLogs();
  document.querySelectorAll("form.wizard").forEach((wizard) => {
    showStep(wizard, 0);
    wizard.addEventListener("input", () => schedulePreview(wizard));
    wizard.addEventListener("change", () => schedulePreview(wizard));
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
      if (file) document.getElementById(input.dataset.loadInto).value = await file.text();
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
        : v && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v)
          ? "lowercase letters, digits and '-', starting and ending with a letter or digit" : "";
    };
    input.addEventListener("input", check);
  });
}

document.addEventListener("DOMContentLoaded", wire);
