// pymr's status page: reads the JSON API and draws it. Every value goes into the page as
// text (textContent), never as HTML, so a job name or error holding markup shows as text.
"use strict";

const REFRESH_MS = 1500;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + Math.round(s % 60) + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function stateCell(state, note) {
  return el("td", {}, el("span", {class: "state state-" + state, text: state}), note ? " " + note : "");
}

function bar(fraction, done) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  const fill = el("span");
  fill.style.width = pct.toFixed(1) + "%";  // through the CSSOM: the page's policy allows no inline style
  return el("div", {class: done ? "bar done" : "bar", role: "progressbar", "aria-valuenow": pct.toFixed(0)}, fill);
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map(h => el("th", {class: h.num ? "num" : null, text: h.label || h})));
  return el("div", {class: "scroll"}, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function num(value) {
  return el("td", {class: "num", text: value === null || value === undefined ? "–" : value.toLocaleString()});
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(url + ": HTTP " + response.status);
  return response.json();
}

// -- the pages ---------------------------------------------------------------------------
function jobRow(job) {
  const maps = job.maps_total ? job.maps_done / job.maps_total : 1;
  const fraction = job.map_bytes_total ? (job.map_bytes_read ?? job.map_bytes_done) / job.map_bytes_total : maps;
  const reduces = job.reduces_total ? job.reduces_done / job.reduces_total : null;
  return el("tr", {"data-job": job.job_id},
    el("td", {}, el("a", {href: "/jobs/" + encodeURIComponent(job.job_id), text: job.job_id})),
    el("td", {text: job.name}),
    stateCell(job.state),
    el("td", {}, bar(fraction, job.maps_done === job.maps_total),
       el("span", {class: "muted", text: "map " + job.maps_done + "/" + job.maps_total})),
    reduces === null ? el("td", {class: "muted", text: "map only"}) :
      el("td", {}, bar(reduces, job.reduces_done === job.reduces_total),
         el("span", {class: "muted", text: "reduce " + job.reduces_done + "/" + job.reduces_total})),
    num(job.failed_attempts),
    el("td", {class: "hide-small", text: (job.submitted || "").replace("T", " ").replace("+00:00", " UTC")}),
    el("td", {class: "num", text: seconds(job.elapsed_s)}));
}

function workersTable(workers) {
  if (!workers.length) return el("p", {class: "muted", text: "No worker is registered."});
  return table(["worker", "host", {label: "slots", num: 1}, "running", {label: "last heartbeat", num: 1},
                {label: "failed attempts", num: 1}, "excluded"],
    workers.map(w => el("tr", {},
      el("td", {text: w.worker_id}), el("td", {text: w.host || "–"}), num(w.slots),
      el("td", {text: w.running.length ? w.running.join(", ") : "idle"}),
      el("td", {class: "num", text: seconds(w.last_heartbeat_s) + " ago"}),
      num(w.failed_attempts), el("td", {text: w.excluded ? "yes" : "no"}))));
}

async function overview() {
  const [jobs, workers] = await Promise.all([getJSON("/api/jobs"), getJSON("/api/workers")]);
  const running = jobs.filter(j => j.state === "running");
  const finished = jobs.filter(j => j.state !== "running").slice(0, 50);
  const headers = ["job", "name", "state", "map", "reduce", {label: "failed", num: 1},
                   {label: "submitted", num: 0}, {label: "time", num: 1}];
  return [
    el("h2", {text: "Running jobs (" + running.length + ")"}),
    running.length ? table(headers, running.map(jobRow)) : el("p", {class: "muted", text: "No job is running."}),
    el("h2", {text: "Recent jobs"}),
    finished.length ? table(headers, finished.map(jobRow)) : el("p", {class: "muted", text: "No job has finished yet."}),
    el("h2", {text: "Workers (" + workers.length + ")"}),
    workersTable(workers),
  ];
}

function phaseBox(title, phase, running) {
  if (!phase || !phase.tasks_total) return null;
  const lines = [el("strong", {text: title}), " ",
                 el("span", {text: phase.tasks_done + "/" + phase.tasks_total + " tasks"})];
  if (phase.bytes_total !== undefined)
    lines.push(el("span", {text: " · " + bytes(phase.bytes_read ?? phase.bytes_done) + " of " +
                                 bytes(phase.bytes_total) + " read"}));
  const facts = [];
  facts.push((phase.fraction * 100).toFixed(1) + "%");
  if (phase.running) facts.push(phase.running + " running");
  if (phase.bytes_per_s) facts.push(bytes(phase.bytes_per_s) + "/s");
  if (running && phase.tasks_done < phase.tasks_total) facts.push("ETA " + seconds(phase.eta_s));
  if (phase.elapsed_s > 0) facts.push((running ? "elapsed " : "took ") + seconds(phase.elapsed_s));
  return el("div", {class: "phase", "data-phase": title},
            el("div", {}, ...lines), bar(phase.fraction, phase.tasks_done === phase.tasks_total),
            el("div", {class: "muted progress-facts", text: facts.join(" · ")}));
}

function logUrl(jobId, attemptId) {
  return "/api/jobs/" + encodeURIComponent(jobId) + "/logs/" + encodeURIComponent(attemptId);
}

function errorBox(where, error, url) {
  return el("div", {class: "error"},
    el("strong", {text: where}),
    el("div", {text: (error.type || "Error") + ": " + (error.message || "")}),
    error.traceback ? el("pre", {class: "traceback", text: error.traceback}) : null,
    error.log_tail ? el("div", {class: "muted", text: "last lines of the attempt's output:"}) : null,
    error.log_tail ? el("pre", {class: "log-tail", text: error.log_tail}) : null,
    url ? el("a", {href: url, class: "whole-log", text: "the attempt's whole output"}) : null);
}

function countersTable(counters) {
  const rows = [];
  for (const [group, names] of Object.entries(counters || {}))
    for (const [name, value] of Object.entries(names))
      rows.push(el("tr", {}, el("td", {text: group}), el("td", {text: name}), num(value)));
  return rows.length ? table(["group", "counter", {label: "value", num: 1}], rows)
                     : el("p", {class: "muted", text: "No counters yet."});
}

function tasksTable(jobId, tasks) {
  const rows = [];
  for (const task of tasks) {
    const attempts = task.attempts.length ? task.attempts : [null];
    attempts.forEach((a, i) => rows.push(el("tr", {},
      el("td", {text: i === 0 ? task.task_id : ""}),
      i === 0 ? stateCell(task.state) : el("td", {}),
      el("td", {class: "hide-small", text: i === 0 ? (task.input || "") : ""}),
      el("td", {}, a ? el("a", {href: logUrl(jobId, a.attempt_id), title: "the attempt's output",
                               text: String(i) + (a.backup ? " (backup)" : "")}) : "–"),
      el("td", {text: a ? a.worker_id : ""}),
      a ? stateCell(a.state, a.progress != null ? Math.round(a.progress * 100) + "%" : "")
        : el("td", {}),
      el("td", {class: "num", text: a ? seconds(a.seconds) : ""}),
      el("td", {text: a && a.error ? a.error.type + ": " + a.error.message : ""}))));
  }
  return table(["task", "state", "input", "attempt", "worker", "attempt state", {label: "time", num: 1}, "error"],
               rows);
}

async function jobPage(jobId) {
  const job = await getJSON("/api/jobs/" + encodeURIComponent(jobId));
  if (job === null) return [el("h1", {text: "Unknown job " + jobId}),
                            el("p", {class: "muted", text: "It is not running and not among the finished jobs listed."})];
  const parts = [
    el("h1", {}, el("span", {class: "job-name", text: job.name}), " ",
       el("span", {class: "state state-" + job.state, id: "job-state", text: job.state})),
    el("p", {class: "muted", text: job.job_id + " · submitted " + (job.submitted || "").replace("T", " ") +
             " · " + seconds(job.elapsed_s) + (job.output ? " · output " + job.output : "")}),
  ];
  if (job.error) parts.push(el("div", {class: "error", id: "job-error"}, el("strong", {text: "Error: "}),
                                el("span", {text: job.error})));
  const running = job.state === "running";
  const phases = job.phases || {};
  parts.push(el("div", {class: "grid"}, phaseBox("map", phases.map, running),
                phaseBox("reduce", phases.reduce, running)));
  if (job.failed && job.failed.length) {
    parts.push(el("h2", {text: "Failed attempts"}));
    for (const a of job.failed)
      if (a.error) parts.push(errorBox(a.task_id + " attempt on " + a.worker_id, a.error,
                                       logUrl(job.job_id, a.attempt_id)));
  }
  parts.push(el("h2", {text: "Counters"}), countersTable(job.counters));
  if (job.largest_partitions && job.largest_partitions.length) {
    parts.push(el("h2", {text: "Largest reduce partitions"}),
               table([{label: "partition", num: 1}, {label: "records", num: 1}],
                     job.largest_partitions.map(p => el("tr", {}, num(p.partition), num(p.records)))));
  }
  if (job.tasks) {
    const shown = job.tasks.length < job.tasks_total ?
      "Showing " + job.tasks.length + " of " + job.tasks_total + " tasks: those that failed or run first. " : "";
    parts.push(el("h2", {text: "Tasks"}), el("p", {class: "muted", text: shown + "An attempt's number links " +
                                                   "to what it printed."}), tasksTable(job.job_id, job.tasks));
  }
  return parts;
}

async function workersPage() {
  const workers = await getJSON("/api/workers");
  return [el("h2", {text: "Workers (" + workers.length + ")"}), workersTable(workers)];
}

// -- refresh loop ------------------------------------------------------------------------
async function draw() {
  const path = location.pathname;
  const main = document.getElementById("main");
  const updated = document.getElementById("updated");
  try {
    let parts;
    const job = path.match(/^\/jobs\/([^/]+)\/?$/);
    if (job) parts = await jobPage(decodeURIComponent(job[1]));
    else if (path.replace(/\/$/, "") === "/workers") parts = await workersPage();
    else parts = await overview();
    main.replaceChildren(...parts.filter(p => p));
    updated.textContent = "updated " + new Date().toLocaleTimeString();
    document.title = "pymr" + (job ? " · " + decodeURIComponent(job[1]) : "");
  } catch (error) {
    updated.textContent = "cannot reach the coordinator (" + error.message + "); retrying";
  }
  setTimeout(draw, REFRESH_MS);
}

draw();
