// Explaining: one request per explanation (POST /explain), long methods as background jobs
// (POST /jobs, polled every 200 ms with a progress bar and Cancel), and hover requests throttled
// to one in flight (the newest pointer position waits; older ones are dropped).

import { api, decodeBase64, sleep } from "./api.js";
import { heatBitmap } from "./canvas.js";
import { describeRegion } from "./regions.js";
import { $, className, currentMethod, dismissError, fail, fmt, layerWords, sessionPath, setStatus, state } from "./state.js";
import { drawAll, showColourBar, showReadout } from "./views.js";
import { clearMasking, showDownloads, showPinnable } from "./panels.js";

const POLL_MS = 200;
let controller = null;  // aborts the previous plain explain request
const hover = { busy: false, next: null };

/** The explain request for the current settings (hover: a pointer-driven one). */
function explainBody(hover) {
  const method = currentMethod();
  const body = {
    image: state.image.image, model: state.model, cls: state.cls, region: state.region,
    layer: method.on_input ? null : $("layer").value || null,
    method: method.name, options: state.optionValues[method.name] ?? {}, hover,
  };
  if (state.view) body.view = state.view;
  return body;
}

function showJob(running, { state: phase = "queued", done = 0, total = 0 } = {}) {
  $("job").hidden = !running;
  const bar = $("progress");
  if (total > 0) {
    bar.max = total;
    bar.value = done;
    $("progress-text").textContent = `${done} / ${total}`;
  } else {
    bar.removeAttribute("value");
    $("progress-text").textContent = phase === "queued" ? "waiting for a free worker…" : "starting…";
  }
}

/** Stop the running job, if any (quiet: no status message, e.g. a newer request replaces it). */
export async function cancelJob(quiet = false) {
  const job = state.job;
  if (!job) return;
  state.job = null;
  showJob(false);
  try {
    await api("DELETE", sessionPath(`/jobs/${encodeURIComponent(job.id)}`));
    if (!quiet) setStatus("Cancelled.");
  } catch (err) {
    fail(err);
  }
}

async function runJob(body) {
  const { job } = await api("POST", sessionPath("/jobs"), body);
  state.job = { id: job };
  $("job").dataset.job = job;
  showJob(true);
  try {
    for (;;) {
      await sleep(POLL_MS);
      if (state.job?.id !== job) return null;  // cancelled or replaced meanwhile
      const status = await api("GET", sessionPath(`/jobs/${encodeURIComponent(job)}`));
      if (state.job?.id !== job) return null;
      showJob(true, status);
      if (status.state === "done") return status.result;
      if (status.state === "error") throw new Error(status.error?.message ?? "the job failed; press Explain to try again.");
      if (status.state === "cancelled") {
        setStatus("Cancelled.");
        return null;
      }
    }
  } finally {
    if (state.job?.id === job) {
      state.job = null;
      showJob(false);
    }
  }
}

/** Show a result: the heatmap over the picture, score, colour bar, readout, downloads and code. */
async function showResult(result, seq, region) {
  const heat = decodeBase64(result.heatmap);
  const bitmap = await heatBitmap(heat, result.shape[0], result.shape[1]);
  if (seq !== state.seq) return;
  state.result = result;
  state.resultRegion = region;
  state.heat = heat;
  state.heatBitmap = bitmap;
  const score = $("score");
  score.textContent = `score ${fmt(result.score)} · ${result.region_pixels} px in region · ${fmt(result.ms)} ms${result.fast ? " (fast)" : ""}`;
  score.dataset.result = result.result;
  $("title-explanation").textContent = `Explanation: ${result.method} ${layerWords(result)}`;
  showColourBar(result);
  showReadout(state.pointer);
  showDownloads(result);
  clearMasking();
  showPinnable();
  drawAll();
  dismissError();
  setStatus(`Explained ${result.class_name} (class ${result.cls}), ${describeRegion(region)}, with ${result.method} ` +
    `${layerWords(result)}.`);
}

/** Explain the current region now (a long method runs as a job). Resolves when shown or dropped. */
export async function explain({ hover: isHover = false } = {}) {
  if (!state.image || state.cls === null) return;
  const method = currentMethod();
  const seq = ++state.seq;
  await cancelJob(true);
  controller?.abort();
  controller = isHover ? null : new AbortController();
  const body = explainBody(isHover);
  setStatus(`Explaining ${className(state.cls)} (class ${state.cls}), ${describeRegion(state.region)}, with ${method.name}…`, true);
  try {
    const result = method.long
      ? await runJob(body)
      : await api("POST", sessionPath("/explain"), body, { signal: controller?.signal });
    if (result && seq === state.seq) await showResult(result, seq, body.region);
  } catch (err) {
    fail(err);
  }
}

/** A pointer-driven explanation at pixel p: at most one in flight, the newest position waits. */
export function hoverAt(p, setRegion) {
  if (currentMethod().long) {
    setStatus(`${currentMethod().name} runs many forward passes; hover needs a fast method (turn hover off or pick another).`);
    return;
  }
  if (hover.busy) {
    hover.next = p;
    return;
  }
  hover.busy = true;
  setRegion(p);
  explain({ hover: true }).finally(() => {
    hover.busy = false;
    const next = hover.next;
    hover.next = null;
    if (next && $("hover").checked) hoverAt(next, setRegion);
  });
}
