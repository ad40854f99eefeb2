// The HOPE console: reads the live server and acts through the same API as curl. The server enforces every role;
// the page only hides what the signed-in role may not do.
import { ApiError, ROLES, call, el, fillTable, fmt } from "/console/api.js";
import { REPORTED_STATES, measurementsView } from "/console/measurements.js";

const PAGE = 25;
const $ = (id) => document.getElementById(id);
const state = { role: "user", seriesOffset: 0, casesOffset: 0, training: null, retrainOn: null, filtersFilled: false,
  trainingTimer: null, modelsKey: null };

/** Tell the user what happened (a polite live region). */
function say(message, error = false) {
  const node = $("status");
  node.textContent = message;
  node.className = error ? "error" : "ok";
}

function may(role) {
  return ROLES.indexOf(state.role) >= ROLES.indexOf(role);
}

/** Run an action; its error (HOPE's reason) is said, never thrown. */
async function act(what, action) {
  try {
    const message = await action();
    if (message) say(message);
  } catch (error) {
    say(`${what}: ${error instanceof ApiError ? `HTTP ${error.status}: ` : ""}${error.message}`, true);
  }
}

async function who() {
  const me = await call("GET", "/auth/token/valid");
  state.role = me.role;
  $("who").textContent = me.verified ? `Signed in as ${me.username} (${me.role}).`
    : `Sign-in is off: this server answers this machine only, and everyone may do everything (${me.role}).`;
  for (const node of document.querySelectorAll("[data-needs]")) node.hidden = !may(node.dataset.needs);
}

// ---------------------------------------------------------------------------------------------------- data
async function overview() {
  const o = await call("GET", "/hope/console/overview");
  const states = Object.keys(o.series.all);
  const modalities = Object.keys(o.series).filter((m) => m !== "all");
  fillTable($("counts"), ["Modality", ...states],
    [...modalities, "all"].map((m) => [m, ...states.map((s) => o.series[m][s])]));
  if (!state.filtersFilled) {
    $("series-state").append(...states.map((s) => el("option", { value: s, text: s })));
    $("series-modality").append(...modalities.map((m) => el("option", { value: m, text: m })));
    $("train-task").append(...Object.keys(o.tasks).map((t) => el("option", { value: t, text: t })));
    state.filtersFilled = true;
  }
  const news = Object.entries(o.tasks).filter(([, t]) => t.new_final_labels !== null)
    .map(([name, t]) => `${name}: ${t.new_final_labels}`).join(", ");
  const retrain = o.retrain;
  state.retrainOn = retrain ? retrain.enabled : null;
  $("retrain-state").textContent = (retrain
    ? `Auto-retrain is ${retrain.enabled ? "on" : "off"}: a task trains after ${retrain.after_new_final_labels} new `
      + `final labels (counted so far: ${Object.entries(retrain.counted).map(([t, n]) => `${t} ${n}`).join(", ")
        || "none"}). `
    : "Auto-retrain needs an Orthanc store. ")
    + `Final labels the newest version of each task was not trained on: ${news || "none"}.`
    + (o.review_enabled ? " Review is on: a label is final once approved." : "");
  $("retrain-toggle").textContent = retrain && retrain.enabled ? "Switch auto-retrain off" : "Switch auto-retrain on";
  $("retrain-toggle").disabled = !retrain;
  // The models panel (and its plots, drawn by the server) only when a version, pin or serving version changed.
  const key = JSON.stringify(Object.entries(o.tasks).map(([name, t]) => [name, t.serving, t.pinned, t.versions]));
  if (key !== state.modelsKey) {
    const panels = await Promise.all(Object.keys(o.tasks).map((task) => models(task)));
    $("tasks").replaceChildren(...panels);
    state.modelsKey = key;
  }
}

function ohifLinks(study) {
  const q = `StudyInstanceUIDs=${encodeURIComponent(study)}`;
  return el("span", {}, el("a", { href: `/ohif/viewer?${q}`, text: "Viewer" }), " · ",
    el("a", { href: `/ohif/monai-label?${q}`, text: "MONAI Label" }));
}

async function seriesPage() {
  const query = new URLSearchParams({ limit: PAGE, offset: state.seriesOffset });
  if ($("series-state").value) query.set("state", $("series-state").value);
  if ($("series-modality").value) query.set("modality", $("series-modality").value);
  const page = await call("GET", `/hope/console/series?${query}`);
  const measured = (s) => page.measured_modalities.includes(s.modality) && REPORTED_STATES.includes(s.state);
  fillTable($("series"), ["Series", "Modality", "Date", "State", "Why flagged", "Suggestion by", "Open study",
    "Measurements"],
  page.items.map((s) => [s.series_uid, s.modality, s.date, s.state, s.reasons.join("; ") || "–",
    s.suggestion_version, ohifLinks(s.study_uid),
    measured(s) ? el("button", { type: "button", text: "Measurements", "aria-label": `Measurements of series `
      + s.series_uid, onclick: () => openMeasurements(s.series_uid) }) : "–"]));
  const last = Math.min(page.offset + page.items.length, page.total);
  $("series-range").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no series";
  $("series-prev").disabled = page.offset === 0;
  $("series-next").disabled = last >= page.total;
}

// ---------------------------------------------------------------------------------------------- measurements
/** Show a series' measurements in the panel (HOPE's reason when it has none). */
async function showMeasurements(series) {
  const out = $("measurement-report");
  out.replaceChildren(el("p", { text: `Reading the measurement report of series ${series}…` }));
  try {
    out.replaceChildren(...measurementsView(await call("GET", `/hope/measurements/${encodeURIComponent(series)}`)));
  } catch (error) {
    out.replaceChildren(el("p", { class: "error", role: "alert",
      text: `No measurements: ${error instanceof ApiError ? `HTTP ${error.status}: ` : ""}${error.message}` }));
  }
}

function openMeasurements(series) {
  $("measurement-series").value = series;
  $("measurements").scrollIntoView();
  return showMeasurements(series);
}

// -------------------------------------------------------------------------------------------------- models
async function models(task) {
  const v = await call("GET", `/hope/models/${encodeURIComponent(task)}/versions`);
  const rows = v.versions.map((version) => {
    const metrics = Object.entries(version.metrics);
    const decision = version.promotion ? version.promotion.reason : "kept without a promotion decision";
    const detail = el("details", {},
      el("summary", { text: `${version.promoted ? "promoted" : "not promoted"}, frozen-set Dice ${fmt(version.score)}` }),
      el("p", { text: decision }),
      el("p", { text: metrics.map(([k, x]) => `${k} ${fmt(x)}`).join(", ") || "no metrics" }));
    const pin = may("admin") && version.version !== v.serving
      ? el("button", { type: "button", text: `Serve ${version.version}`, onclick: () => pinVersion(task, version.version) })
      : (version.version === v.serving ? "serving" : "");
    return [version.version, version.created, version.started_by, detail, version.training_data.length, pin];
  });
  const table = el("table", {}, el("caption", { text: `Versions of ${task}` }));
  fillTable(table, ["Version", "Created", "Started by", "Decision and metrics", "Training labels", "Serve"], rows);
  const unpin = may("admin") && v.pinned
    ? el("button", { type: "button", text: `Unpin ${task} (the best version serves)`, onclick: () => unpinTask(task) })
    : null;
  return el("article", { "aria-labelledby": `task-${task}` },
    el("h3", { id: `task-${task}`, text: task }),
    el("p", { "data-serving": task, text: `Serving ${v.serving ?? "nothing"}${v.pinned ? " (pinned)" : " (the best)"}.` }),
    unpin, el("div", { class: "scroll" }, table),
    el("img", { class: "plot", src: `/hope/models/${encodeURIComponent(task)}/plot.png?at=${Date.now()}`,
      alt: `Training curves of the latest run and Dice per version of ${task}` }));
}

function pinVersion(task, version) {
  return act("Pin", async () => {
    const answer = await call("PUT", `/hope/models/${encodeURIComponent(task)}/pin`, { version });
    await overview();
    return `${task} now serves ${answer.serving} (pinned).`;
  });
}

function unpinTask(task) {
  return act("Unpin", async () => {
    const answer = await call("DELETE", `/hope/models/${encodeURIComponent(task)}/pin`);
    await overview();
    return `${task} now serves its best version, ${answer.serving}.`;
  });
}

/** The latest `epoch N/M` of a training task's log lines. */
function epochOf(task) {
  for (const line of [...(task.details || [])].reverse()) {
    const found = /epoch (\d+)\/(\d+)/.exec(line);
    if (found) return [Number(found[1]), Number(found[2])];
  }
  return null;
}

async function pollTraining() {
  clearTimeout(state.trainingTimer);
  let running = false;
  try {
    const task = await call("GET", "/train/");
    running = ["SUBMITTED", "RUNNING"].includes(task.status);
    const epoch = epochOf(task);
    const request = task.request || {};
    $("train-state").textContent = `Training ${request.model ?? ""} (run ${task.id}, started by `
      + `${request.started_by ?? "the server"}): ${task.status}` + (epoch ? `, epoch ${epoch[0]} of ${epoch[1]}` : "")
      + "." + (task.model_version?.promotion ? ` Kept ${task.model_version.version}: ${task.model_version.promotion.reason}` : "");
    $("train-progress").max = epoch ? epoch[1] : 1;
    $("train-progress").value = epoch ? epoch[0] : (task.status === "DONE" ? 1 : 0);
    if (state.training && state.training !== task.status && !running) await overview();
    state.training = task.status;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) $("train-state").textContent = `Training: ${error.message}`;
  }
  state.trainingTimer = setTimeout(pollTraining, running ? 1000 : 3000);
}

// ---------------------------------------------------------------------------------------------------- team
async function team() {
  const t = await call("GET", "/hope/console/team");
  fillTable($("annotators"), ["Annotator", "Labels", "Final", "Rejected", "Rejection rate",
    "Median hours from suggestion to final", "Mean Dice of final label vs suggestion"],
  t.annotators.map((a) => [a.annotator, a.labels, a.final, a.rejected, fmt(a.rejection_rate),
    fmt(a.median_hours_to_final), fmt(a.mean_suggestion_dice)]));
  $("review-state").textContent = t.review ? `${t.review.waiting} label(s) await review.`
    : "Review is off: a saved label is final at once.";
  const reviewer = may("reviewer");
  fillTable($("review-queue"), ["Series", "Annotator", "Submitted", ...(reviewer ? ["Decision"] : [])],
    (t.review ? t.review.oldest : []).map((s) => [
      el("a", { href: `/ohif/monai-label?StudyInstanceUIDs=${encodeURIComponent(s.study_uid)}`, text: s.series_uid }),
      s.annotator, s.submitted_at, ...(reviewer ? [decisionForm(s)] : [])]));
}

/** Approve, or reject with a comment, a submitted label (POST /hope/review/{SEG SOP Instance UID}). */
function decisionForm(submission) {
  const id = `comment-${submission.seg_sop_uid}`;
  const comment = el("input", { id, type: "text", size: 24 });
  const decide = (decision) => act(`${decision === "approve" ? "Approving" : "Rejecting"} the label`, async () => {
    await call("POST", `/hope/review/${encodeURIComponent(submission.seg_sop_uid)}`,
      { decision, comment: comment.value });
    await Promise.all([team(), overview()]);
    return `The label of ${submission.series_uid} by ${submission.annotator} is ${decision}d.`;
  });
  return el("span", {},
    el("label", { for: id, text: "Comment " }), comment,
    el("button", { type: "button", text: "Approve", onclick: () => decide("approve") }),
    el("button", { type: "button", text: "Reject", onclick: () => decide("reject") }));
}

// ------------------------------------------------------------------------------------------ active learning
function bars(name, distribution) {
  const high = Math.max(1, ...distribution.counts);
  const range = distribution.edges.length ? `${fmt(distribution.edges[0], 3)} to ${fmt(distribution.edges.at(-1), 3)}`
    : "no values";
  return el("figure", {},
    el("figcaption", { text: `${name}: ${distribution.series} series, ${range}` }),
    el("div", { class: "bars", role: "img", "aria-label": `${name}, series per bin: ${distribution.counts.join(", ")}` },
      ...distribution.counts.map((n) => el("span", { style: `height:${(100 * n) / high}%` }))));
}

async function activeLearning() {
  const a = await call("GET", "/hope/console/activelearning");
  const inUse = Object.entries(a.in_use).map(([s, n]) => `${s} (${n})`).join(", ");
  $("al-strategies").textContent = `Strategies: ${a.strategies.join(", ")}. In use by the leases held: ${inUse || "none"}.`;
  fillTable($("leases"), ["Series", "Annotator", "Task", "Strategy", "Granted", "Expires"],
    a.leases.map((l) => [l.series_uid, l.client_id, l.task, l.strategy,
      new Date(l.granted * 1000).toLocaleString(), new Date(l.expires * 1000).toLocaleString()]));
  $("al-scores").replaceChildren(...Object.entries(a.scores).map(([task, fields]) => el("article", {},
    el("h3", { text: `Score distribution, ${task}` }),
    ...Object.entries(fields).map(([name, d]) => bars(name, d)))));
}

// ------------------------------------------------------------------------------------------------- store link
async function storeLink() {
  const s = await call("GET", "/hope/console/store");
  const yes = (v) => (v === null ? "unknown" : v ? "yes" : "no");
  const o = s.outbox;
  $("store-link").replaceChildren(
    el("li", { text: `HOPE reaches Orthanc: ${yes(s.hope_sees_orthanc)}` }),
    el("li", { text: `Orthanc's plugin reaches HOPE: ${yes(s.orthanc_sees_hope)}` }),
    el("li", { text: o ? `Outbox: ${o.pending} pending, ${o.delivered} delivered, ${o.rejected} rejected; `
      + `${o.series_to_process} series still to process` : "Outbox: unknown" }),
    el("li", { class: s.error ? "error" : null, text: `Last error: ${s.error ?? "none"}` }));
  fillTable($("outbox"), ["Event", "Status", "Type", "Series", "Attempts", "Last error", "Action"],
    (o ? o.troubled : []).map((e) => [e.id, e.status, e.type, e.series_uid, e.attempts, e.last_error,
      e.status === "rejected" && may("admin")
        ? el("button", { type: "button", text: "Retry", "aria-label": `Retry event ${e.id}`, onclick: () => retry(e.id) })
        : ""]));
}

function retry(id) {
  return act("Retry", async () => {
    await call("POST", `/hope/console/outbox/${encodeURIComponent(id)}/retry`);
    await storeLink();
    return `Event ${id} is pending again.`;
  });
}

// ------------------------------------------------------------------------------------------ rare tumour types
function resultsOf(c) {
  const lines = [];
  for (const [series, tasks] of Object.entries(c.results)) {
    for (const [task, kept] of Object.entries(tasks)) {
      lines.push(el("details", {}, el("summary", { text: `${task} on ${series.slice(-12)}: ${kept.created ?? ""} `
        + `by ${kept.user ?? "?"}` }), el("pre", { text: JSON.stringify(kept.result ?? kept, null, 1) })));
    }
  }
  return lines.length ? el("div", {}, ...lines) : "none";
}

async function cases() {
  const r = await call("GET", `/hope/console/cases?limit=${PAGE}&offset=${state.casesOffset}`);
  fillTable($("types"), ["Tumour type", "Case records", "Support cases (labelled)"],
    Object.entries(r.types).map(([type, n]) => [type, n.cases, n.support]));
  fillTable($("cases"), ["Study", "Tumour type", "Verdict", "Confirmation", "Support case", "Latest results", "Audit"],
    r.items.map((c) => [c.study_uid, c.tumor_type, c.verdict, c.confirmation, c.support ? "yes" : "no", resultsOf(c),
      may("reviewer") ? el("button", { type: "button", text: "Show audit", "aria-label": `Show the audit of study `
        + c.study_uid, onclick: () => caseAudit(c.study_uid) }) : ""]));
  const last = Math.min(r.offset + r.items.length, r.total);
  $("cases-range").textContent = r.total ? `${r.offset + 1}–${last} of ${r.total}` : "no case records";
  $("cases-prev").disabled = r.offset === 0;
  $("cases-next").disabled = last >= r.total;
}

function caseAudit(study) {
  return act("Audit", async () => {
    const events = await call("GET", `/cases/${encodeURIComponent(study)}/audit`);
    const table = el("table", {}, el("caption", { text: `Audit of study ${study}` }));
    fillTable(table, ["When", "Who", "Action", "Reason", "New values"],
      events.map((e) => [e.at, e.who, e.action, e.reason, JSON.stringify(e.new_values)]));
    $("case-audit").replaceChildren(el("div", { class: "scroll" }, table));
  });
}

async function importCases(event) {
  event.preventDefault();
  const out = $("import-result");
  out.replaceChildren();
  try {
    const answer = await call("POST", "/cases/import", new FormData(event.target));
    out.replaceChildren(el("p", { class: "ok", text: `Imported ${answer.imported} case record(s).` }));
    await cases();
  } catch (error) {
    const lines = error.message.split("\n").map((line) => line.trim()).filter(Boolean);
    out.replaceChildren(el("div", { role: "alert", class: "error" }, el("p", { text: lines[0] }),
      el("ul", {}, ...lines.slice(1).map((line) => el("li", { text: line })))));
  }
}

// ---------------------------------------------------------------------------------------------------- wiring
function wire() {
  $("series-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    state.seriesOffset = 0;
    act("Series", seriesPage);
  });
  $("series-prev").addEventListener("click", () => { state.seriesOffset = Math.max(0, state.seriesOffset - PAGE); act("Series", seriesPage); });
  $("series-next").addEventListener("click", () => { state.seriesOffset += PAGE; act("Series", seriesPage); });
  $("cases-prev").addEventListener("click", () => { state.casesOffset = Math.max(0, state.casesOffset - PAGE); act("Cases", cases); });
  $("cases-next").addEventListener("click", () => { state.casesOffset += PAGE; act("Cases", cases); });
  $("retrain-toggle").addEventListener("click", () => act("Auto-retrain", async () => {
    const answer = await call("PUT", "/hope/retrain", { enabled: !state.retrainOn });
    await overview();
    return `Auto-retrain is ${answer.enabled ? "on" : "off"}.`;
  }));
  $("train-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act("Training", async () => {
      const task = $("train-task").value;
      const params = { max_epochs: Number($("train-epochs").value), val_split: Number($("train-val").value) };
      const answer = await call("POST", `/train/${encodeURIComponent(task)}`, params);
      state.training = "SUBMITTED";
      pollTraining();
      return `Training of ${task} started (run ${answer.id}).`;
    });
  });
  $("train-stop").addEventListener("click", () => act("Stop", async () => {
    await call("DELETE", "/train/");
    return "Training stopped; the serving model stays as it was.";
  }));
  $("import-form").addEventListener("submit", importCases);
  $("measurement-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showMeasurements($("measurement-series").value.trim());
  });
}

async function refresh() {
  await Promise.all([["Data and models", overview], ["Team", team], ["Active learning", activeLearning],
    ["Store link", storeLink]].map(([what, load]) => act(what, load)));
  setTimeout(refresh, 15000);
}

async function start() {
  wire();
  await act("Sign-in", who);
  await Promise.all([refresh(), act("Series", seriesPage), act("Cases", cases)]);
  document.body.dataset.ready = "true";
  pollTraining();
}

start();
