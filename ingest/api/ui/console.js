// The web console: three pages (Jobs, a Job, Upload) over the documented API (/openapi.json).
// No framework: a hash router, fetch, and DOM built with textContent (never innerHTML from data).
"use strict";

const BASE = new URL("../", location.href); // the API root: the console lives at <root>/ui/
const TOKEN_KEY = "ingest.token";
const POLL_MS = 2000;
const $ = (selector) => document.querySelector(selector);

class Unauthorized extends Error {}

function token() { return sessionStorage.getItem(TOKEN_KEY); }
function authHeaders() { const t = token(); return t ? { Authorization: `Bearer ${t}` } : {}; }

async function api(path, options = {}) {
  const response = await fetch(new URL(path, BASE), { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (response.status === 401) throw new Unauthorized((body && body.message) || "authentication required");
  if (!response.ok) throw new Error((body && body.message) || `${response.status} ${response.statusText}`);
  return body;
}

// -- small DOM helpers ---------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value; else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}

// Wire times are UTC "YYYY-MM-DD HH:MM:SS"; Events carry RFC 3339. Shown in the viewer's local
// time, with UTC on hover.
function parseTime(text) {
  if (!text) return null;
  const iso = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(text) ? text.replace(" ", "T") + "Z" : text;
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? null : moment;
}

function timeCell(text) {
  const moment = parseTime(text);
  if (!moment) return el("span", {}, text || "");
  const utc = moment.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  return el("time", { datetime: moment.toISOString(), title: utc }, moment.toLocaleString());
}

function stateCell(state) { return el("span", { class: `state-${state}` }, state); }

function percentBar(jobId, percent) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  return el("span", {},
    el("progress", { max: "100", value: String(value), "aria-label": `Job ${jobId} task progress` }, `${value} %`),
    ` ${value.toFixed(1)} %`);
}

function fill(tbody, rows) { tbody.replaceChildren(...rows); }

// -- routing, polling, sign-in -------------------------------------------------------------------

let timer = null;
let generation = 0; // a response for a page the viewer has left is dropped

function stopPolling() { if (timer) clearTimeout(timer); timer = null; }

function show(sectionId) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== sectionId;
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === sectionId || (sectionId === "job" && link.dataset.page === "jobs")) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  $("#logout").hidden = !token();
}

function showLogin(message) {
  stopPolling();
  generation += 1;
  // no data stays on the page once the service says we may not see it
  for (const tbody of document.querySelectorAll("tbody")) tbody.replaceChildren();
  $("#job-document").replaceChildren();
  $("#login-reason").textContent = token() ? `The token was not accepted (${message}).` : "This service needs an access token.";
  show("login");
  $("#token").focus();
}

async function guarded(run) {
  const mine = generation;
  try {
    await run(() => mine === generation);
  } catch (error) {
    if (error instanceof Unauthorized) { showLogin(error.message); return; }
    throw error;
  }
}

function route() {
  stopPolling();
  generation += 1;
  const hash = location.hash || "#/jobs";
  const job = hash.match(/^#\/job\/(\d+)$/);
  if (job) { show("job"); guarded((current) => loadJob(Number(job[1]), current)); }
  else if (hash === "#/upload") { show("upload"); }
  else { show("jobs"); guarded((current) => loadJobs(current)); }
}

// -- Jobs ----------------------------------------------------------------------------------------

const listing = { tokens: [null], page: 0, painted: false };

function jobsQuery() {
  const params = new URLSearchParams({ limit: $("#filter-limit").value });
  if ($("#filter-state").value) params.set("state", $("#filter-state").value);
  if ($("#filter-incomplete").checked) params.set("incomplete", "true");
  const start = listing.tokens[listing.page];
  if (start) params.set("continue", start);
  return `jobs?${params}`;
}

async function loadJobs(current) {
  let page;
  try {
    page = await api(jobsQuery());
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    if (current()) $("#jobs-status").textContent = `Could not read the jobs: ${error.message}`;
    timer = setTimeout(() => guarded(loadJobs), POLL_MS);
    return;
  }
  if (!current()) return;
  const rows = page.jobs.map((job) => el("tr", { "data-job-id": String(job.job_id) },
    el("td", {}, el("a", { href: `#/job/${job.job_id}` }, String(job.job_id))),
    el("td", {}, stateCell(job.state)),
    el("td", {}, job.task),
    el("td", {}, percentBar(job.job_id, job.task_percent)),
    el("td", {}, timeCell(job.created)),
    el("td", {}, timeCell(job.updated)),
    el("td", {}, job.user || "")));
  fill($("#jobs-table tbody"), rows);
  listing.tokens.length = listing.page + 1;
  listing.tokens.push(page.continue);
  $("#older").disabled = !page.continue;
  $("#newer").disabled = listing.page === 0;
  $("#jobs-status").textContent = page.jobs.length
    ? `Page ${listing.page + 1}: ${page.jobs.length} job${page.jobs.length === 1 ? "" : "s"}${page.continue ? "" : ", the oldest"}. Updated ${new Date().toLocaleTimeString()}.`
    : (page.continue ? "No matching jobs in this stretch of history; Older reads on." : "No jobs.");
  if (!listing.painted) {
    listing.painted = true;
    performance.mark("jobs-painted");
    document.body.dataset.jobsPainted = String(performance.now());
  }
  timer = setTimeout(() => guarded((again) => current() && loadJobs(again)), POLL_MS);
}

function restartJobs() { listing.tokens = [null]; listing.page = 0; route(); }

// -- a Job ---------------------------------------------------------------------------------------

let shownJob = null;

async function loadJob(jobId, current) {
  let page;
  try {
    page = await api(`jobs/${jobId}`);
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    if (current()) {
      $("#job-title").textContent = `Job ${jobId}`;
      $("#job-status").textContent = error.message;
      $("#job-document").replaceChildren();
    }
    return;
  }
  if (!current()) return;
  shownJob = jobId;
  const job = page.job;
  $("#job-title").textContent = `Job ${jobId}`;
  $("#job-status").textContent = job.complete ? `Complete: ${job.state}.` : `In progress (${job.task}). Updated ${new Date().toLocaleTimeString()}.`;
  const fields = [
    ["State", stateCell(job.state)], ["Task", job.task], ["Progress", percentBar(jobId, job.task_percent)],
    ["Complete", job.complete ? "yes" : "no"], ["Created", timeCell(job.created)], ["Updated", timeCell(job.updated)],
    ["User", page.user || "(none)"], ["Operation", page.operation || ""], ["Phase", page.phase || ""],
    ["Worker attempts", String(page.attempts ?? 0)],
  ];
  $("#job-document").replaceChildren(...fields.flatMap(([name, value]) => [el("dt", {}, name), el("dd", { "data-field": name.toLowerCase() }, value)]));
  $("#job-exception-box").hidden = !job.exception;
  $("#job-exception").textContent = job.exception;

  $("#job-problems-box").hidden = !page.problems.length;
  fill($("#job-problems tbody"), page.problems.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.file)), el("td", {}, p.reason), el("td", {}, p.detail))));

  $("#job-files-box").hidden = page.files === null;
  if (page.files !== null) {
    $("#job-files-note").textContent = page.files_total > page.files.length
      ? `The first ${page.files.length} of ${page.files_total} files.` : `${page.files_total} files.`;
    fill($("#job-files tbody"), page.files.map((f) => el("tr", { "data-path": f.path },
      el("td", {}, el("code", {}, f.path)), el("td", { class: "num" }, String(f.size)),
      el("td", { class: "digest" }, `${f.hashtype}:${f.hashsum}`), el("td", {}, el("code", {}, f.key || "")))));
  }
  fill($("#job-events tbody"), page.events.map((e) => el("tr", {},
    el("td", {}, timeCell(e.time)), el("td", {}, e.type), el("td", {}, e.reason), el("td", {}, e.message))));

  $("#job-admin").hidden = !page.actions.length;
  for (const button of document.querySelectorAll("#admin-form button[data-action]")) {
    button.hidden = !page.actions.includes(button.dataset.action);
  }
  if (!job.complete) timer = setTimeout(() => guarded((again) => current() && loadJob(jobId, again)), POLL_MS);
}

async function adminAction(action) {
  const jobId = shownJob;
  const reason = $("#admin-reason").value.trim();
  $("#admin-status").textContent = `Asking the service to ${action} job ${jobId}…`;
  try {
    const document_ = await api(`jobs/${jobId}/${action}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(reason ? { reason } : {}),
    });
    $("#admin-status").textContent = `Done: job ${jobId} is ${document_.state} at ${document_.task}.`;
  } catch (error) {
    if (error instanceof Unauthorized) { showLogin(error.message); return; }
    $("#admin-status").textContent = `Refused: ${error.message}`;
  }
  route();
}

// -- Upload --------------------------------------------------------------------------------------

let chosen = null; // {kind: "folder", files: [{file, path}]} or {kind: "tar", file}

function describeChoice() {
  if (!chosen) return "Nothing chosen yet.";
  if (chosen.kind === "tar") return `The bundle ${chosen.file.name} (${chosen.file.size} bytes), sent as it is.`;
  const bytes = chosen.files.reduce((total, f) => total + f.file.size, 0);
  return `${chosen.files.length} files (${bytes} bytes) to bundle.`;
}

function choose(choice) { chosen = choice; $("#chosen").textContent = describeChoice(); }

function stripTop(path) { const slash = path.indexOf("/"); return slash < 0 ? path : path.slice(slash + 1); }

function fromFolderInput(input) {
  const files = Array.from(input.files, (file) => ({ file, path: stripTop(file.webkitRelativePath || file.name) }));
  choose(files.length ? { kind: "folder", files } : null);
}

function readAllEntries(reader) {
  return new Promise((resolve, reject) => {
    const all = [];
    const next = () => reader.readEntries((batch) => { if (!batch.length) resolve(all); else { all.push(...batch); next(); } }, reject);
    next();
  });
}

async function walk(entry, prefix, out) {
  if (entry.isFile) {
    out.push({ file: await new Promise((resolve, reject) => entry.file(resolve, reject)), path: prefix + entry.name });
  } else if (entry.isDirectory) {
    for (const child of await readAllEntries(entry.createReader())) await walk(child, `${prefix}${entry.name}/`, out);
  }
}

async function fromDrop(event) {
  const entries = Array.from(event.dataTransfer.items || [], (item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  if (entries.length === 1 && entries[0].isFile && /\.tar$/i.test(entries[0].name)) {
    choose({ kind: "tar", file: event.dataTransfer.files[0] });
    return;
  }
  const files = [];
  for (const entry of entries) {
    if (entry.isDirectory) for (const child of await readAllEntries(entry.createReader())) await walk(child, "", files);
    else await walk(entry, "", files);
  }
  choose(files.length ? { kind: "folder", files } : null);
}

function uploadProgress(sent, total) {
  const percent = total ? Math.floor((sent / total) * 1000) / 10 : 0;
  $("#upload-progress").value = percent;
  $("#upload-progress").textContent = `${percent} %`;
  $("#upload-percent").textContent = `${percent} % (${sent} of ${total} bytes)`;
}

// tus 1.0 when the service offers it (resumable: a dropped connection goes on from the server's
// offset), else one POST /upload with the same bytes.
async function offersTus() {
  try {
    const response = await fetch(new URL("uploads/", BASE), { method: "OPTIONS", headers: authHeaders() });
    return response.ok && (response.headers.get("Tus-Version") || "").split(",").map((v) => v.trim()).includes("1.0.0") && Boolean(window.tus);
  } catch (error) {
    return false;
  }
}

function sendTus(file) {
  return new Promise((resolve, reject) => {
    let jobId = null;
    const upload = new window.tus.Upload(file, {
      endpoint: new URL("uploads/", BASE).href,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      metadata: { filename: file.name, filetype: "application/x-tar" },
      headers: authHeaders(),
      removeFingerprintOnSuccess: true,
      onProgress: uploadProgress,
      onAfterResponse: (request, response) => {
        const header = response.getHeader("Ingest-Job-Id");
        if (header) jobId = Number(header);
        if (jobId === null && request.getMethod() === "POST") {
          try { jobId = JSON.parse(response.getBody()).job_id ?? null; } catch (error) { /* not JSON */ }
        }
      },
      onError: (error) => reject(error.originalResponse && error.originalResponse.getStatus() === 401 ? new Unauthorized("authentication required") : error),
      onSuccess: () => (jobId ? resolve(jobId) : reject(new Error("the service did not say which job the upload became"))),
    });
    upload.start();
  });
}

function sendPost(file) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", new URL("upload", BASE));
    request.setRequestHeader("Content-Type", "application/x-tar");
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => uploadProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    request.onload = () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch (error) { body = null; }
      if (request.status === 401) reject(new Unauthorized((body && body.message) || "authentication required"));
      else if (request.status !== 200 || !body) reject(new Error((body && body.message) || `${request.status} ${request.statusText}`));
      else { uploadProgress(file.size, file.size); resolve(body.job_id); }
    };
    request.onerror = () => reject(new Error("the connection to the service broke"));
    request.send(file);
  });
}

async function follow(jobId) {
  const line = $("#upload-job");
  line.hidden = false;
  line.dataset.jobId = String(jobId);
  for (;;) {
    const job = await api(`get_state/${jobId}`);
    line.replaceChildren(el("a", { href: `#/job/${jobId}` }, `Job ${jobId}`), ": ", stateCell(job.state),
      ` ${job.task} ${job.task_percent} %`, job.complete ? " (complete)" : "");
    line.dataset.state = job.state;
    line.dataset.complete = String(job.complete);
    if (job.complete) {
      $("#upload-status").textContent = job.state === "OK" ? `Job ${jobId} is archived.` : `Job ${jobId} FAILED: ${job.exception}`;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function submitUpload(event) {
  event.preventDefault();
  if (!chosen) { $("#upload-status").textContent = "Choose a folder or a .tar bundle first."; $("#folder").focus(); return; }
  const button = $("#upload-button");
  button.disabled = true;
  $("#upload-job").hidden = true;
  uploadProgress(0, 0);
  try {
    let file;
    if (chosen.kind === "tar") {
      file = chosen.file;
    } else {
      const keyValues = $("#keyvalues").value.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
        const at = line.indexOf("=");
        if (at < 1) throw new Error(`key-value "${line}" is not key=value`);
        return [line.slice(0, at).trim(), line.slice(at + 1).trim()];
      });
      const fields = { project: $("#project").value.trim(), submitter: $("#submitter").value.trim(), instrument: $("#instrument").value.trim(), keyValues };
      file = await window.IngestBundle.buildBundle(chosen.files, fields, {
        hashtype: $("#hashtype").value,
        onHashed: (done, total, path) => { $("#upload-status").textContent = `Computing checksums: ${done} of ${total} (${path})`; },
      });
    }
    const tus = await offersTus();
    $("#upload-status").textContent = `Sending ${file.size} bytes${tus ? " (resumable, tus)" : ""}…`;
    $("#upload-job").dataset.protocol = tus ? "tus" : "post";
    const jobId = tus ? await sendTus(file) : await sendPost(file);
    uploadProgress(file.size, file.size);
    $("#upload-status").textContent = `Sent. Following job ${jobId}…`;
    await follow(jobId);
  } catch (error) {
    if (error instanceof Unauthorized) { showLogin(error.message); return; }
    $("#upload-status").textContent = `The upload did not go through: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

// -- wiring --------------------------------------------------------------------------------------

function start() {
  window.addEventListener("hashchange", () => {
    route();
    // a new page: put keyboard and screen-reader focus on its heading, as a page load would
    const heading = document.querySelector("main > section:not([hidden]) h2");
    if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
  });
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    route();
  });
  $("#logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); route(); });
  for (const control of ["#filter-state", "#filter-incomplete", "#filter-limit"]) $(control).addEventListener("change", restartJobs);
  $("#filters").addEventListener("submit", (event) => { event.preventDefault(); restartJobs(); });
  $("#older").addEventListener("click", () => { listing.page += 1; route(); });
  $("#newer").addEventListener("click", () => { listing.page = Math.max(0, listing.page - 1); route(); });
  for (const button of document.querySelectorAll("#admin-form button[data-action]")) {
    button.addEventListener("click", () => adminAction(button.dataset.action));
  }
  $("#folder").addEventListener("change", (event) => fromFolderInput(event.target));
  $("#tarfile").addEventListener("change", (event) => choose(event.target.files[0] ? { kind: "tar", file: event.target.files[0] } : null));
  const zone = $("#dropzone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => { event.preventDefault(); zone.classList.remove("over"); fromDrop(event); });
  $("#upload-form").addEventListener("submit", submitUpload);
  route();
}

document.addEventListener("DOMContentLoaded", start);
