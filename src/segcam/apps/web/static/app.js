// segcam serve — the page.  On load it opens a session, shows the first bundled scene with the
// default model, predicts, and explains the class of the biggest predicted object (whole class).
// Every later control change re-explains (long methods wait for the Explain button).

import { api } from "./api.js";
import { buildOptionsForm, el } from "./controls.js";
import { cancelJob, explain, hoverAt } from "./explain.js";
import { initPanels } from "./panels.js";
import { setClass, setSliceRange, setupVolume, showLayerInfo, showPicture } from "./picture.js";
import { $, currentMethod, dismissError, fail, sessionPath, setStatus, showError, state } from "./state.js";
import { Tools } from "./tools.js";
import { drawAll, showReadout } from "./views.js";

const TOOL_HINTS = {
  pixel: "Click a pixel (or focus a picture, move with the arrow keys, press Enter).",
  box: "Drag a box (keyboard: Enter at one corner, Enter at the other).",
  polygon: "Click the vertices (keyboard: Space at the cursor); double-click or Enter closes the polygon, Escape drops it.",
  brush: "Paint with the mouse (keyboard: Space adds a point, Enter finishes).",
  object: "Click an object: its connected predicted region is explained.",
  class: "Every pixel predicted as the class (click a pixel to take its class).",
  all: "The whole picture.",
};
const FOLLOWING_TOOLS = new Set(["pixel", "object", "class"]);
let tools = null;

const labelAt = ([y, x]) => state.labels[y * state.w + x];

/** Re-explain after a settings change; a long method waits for the Explain button. */
function autoExplain() {
  const method = currentMethod();
  if (method.long) {
    setStatus(`${method.name} runs many forward passes: press Explain to start it (it runs with a progress bar).`);
    return Promise.resolve();
  }
  return explain();
}

function commitRegion(region, point) {
  if (point && state.labels && (region.kind === "object" || (FOLLOWING_TOOLS.has(region.kind) && $("class-follow").checked))) {
    setClass(labelAt(point));
  }
  state.region = region;
  state.draft = null;
  drawAll();
  explain();
}

function setHoverRegion(point) {
  if ($("class-follow").checked) setClass(labelAt(point));
  state.region = { kind: "pixel", points: [point] };
}

function setTool(name) {
  state.tool = name;
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === name));
  }
  $("tool-hint").textContent = TOOL_HINTS[name];
  $("brush-row").hidden = name !== "brush";
  tools.reset();
  if (name === "class" || name === "all") commitRegion({ kind: name }, null);
}

/** Open an image (request: resolves to its image info), show it and explain it. */
async function openImage(request, label) {
  dismissError();
  setStatus(`Loading ${label}…`, true);
  try {
    state.image = await request();
    $("image-name").textContent = `${state.image.name} · ${state.image.shape.join("×")}` +
      `${state.image.channels ? ` · ${state.image.channels} channel${state.image.channels > 1 ? "s" : ""}` : ""}`;
    setupVolume(state.image);
    if (await showPicture(true)) await explain();
  } catch (err) {
    fail(err);
  }
}

function upload(file) {
  const limit = state.info.limits?.max_upload_bytes;
  if (limit && file.size > limit) {
    showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB, more than this server takes ` +
      `(${(limit / 2 ** 20).toFixed(1)} MiB); crop or downsample it, or start segcam serve with a larger upload limit.`);
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  openImage(() => api("POST", sessionPath("/images"), form), file.name);
}

async function reshow() {
  try {
    if (await showPicture(false)) await autoExplain();
  } catch (err) {
    fail(err);
  }
}

function methodChanged() {
  const method = currentMethod();
  buildOptionsForm($("options"), method, state.optionValues[method.name] ?? {}, (values) => {
    state.optionValues[method.name] = values;
    autoExplain();
  });
  $("layer").disabled = Boolean(method.on_input);
  $("method-summary").textContent = `${method.summary ?? ""}` +
    `${method.on_input ? " Explains the input pixels directly: no layer." : ""}` +
    `${method.long ? " Runs many forward passes as a job (progress bar, Cancel)." : ""}`;
}

function fillModels() {
  const models = state.info.models;
  $("model").replaceChildren(...models.map((m) => el("option", { value: m.name },
    `${m.name} (${m.family}, ${m.dims}-D, ${m.class_names.length} classes)`)));
  $("model").value = state.model;
  $("model").disabled = models.length < 2;
}

function fillStatic() {
  const info = state.info;
  state.model = info.models[0].name;
  fillModels();
  $("method").replaceChildren(...info.methods.map((m) => el("option", { value: m.name }, `${m.name}${m.long ? " (long)" : ""}`)));
  $("method").value = info.default_method ?? info.methods[0].name;
  methodChanged();
  $("sample").replaceChildren(...info.samples.map((s) => el("option", { value: s.id }, s.name)));
  $("model-upload").hidden = !info.allow_model_upload;
  $("version").textContent = `segcam ${info.version}`;
}

async function addModel() {
  const file = $("model-file").files[0];
  if (!file) {
    showError("choose a .safetensors weights file first (Add a model), then press Add model.");
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  if ($("model-family").value.trim()) form.append("family", $("model-family").value.trim());
  try {
    const model = await api("POST", "api/models", form);
    state.info.models = [...state.info.models.filter((m) => m.name !== model.name), model];
    state.model = model.name;
    fillModels();
    if (state.image && (await showPicture(true))) await autoExplain();
  } catch (err) {
    fail(err);
  }
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function wire() {
  const on = (id, type, fn) => $(id).addEventListener(type, fn);
  on("error-dismiss", "click", dismissError);
  on("sample", "change", () => openImage(() => api("POST", sessionPath(`/samples/${encodeURIComponent($("sample").value)}`)),
    $("sample").selectedOptions[0]?.textContent ?? "sample"));
  on("upload", "change", () => {
    const file = $("upload").files[0];
    if (file) upload(file);
  });
  on("model", "change", async () => {
    state.model = $("model").value;
    try {
      if (state.image && (await showPicture(true))) await explain();
    } catch (err) {
      fail(err);
    }
  });
  on("model-add", "click", addModel);
  on("axis", "change", () => {
    state.view = { axis: Number($("axis").value), index: Math.floor(state.image.shape[Number($("axis").value)] / 2) };
    setSliceRange();
    reshow();
  });
  const sliceChanged = debounce(reshow, 150);
  on("slice", "input", () => {
    state.view = { ...state.view, index: Number($("slice").value) };
    setSliceRange();
    sliceChanged();
  });
  on("class", "change", () => {
    state.cls = Number($("class").value);
    if (state.region.kind === "object") state.region = { kind: "class" };
    drawAll();
    autoExplain();
  });
  for (const button of document.querySelectorAll("[data-tool]")) button.addEventListener("click", () => setTool(button.dataset.tool));
  on("layer", "change", () => {
    showLayerInfo();
    autoExplain();
  });
  on("method", "change", () => {
    methodChanged();
    autoExplain();
  });
  on("explain", "click", () => explain());
  on("cancel", "click", () => cancelJob());
  on("hover", "change", () => setStatus($("hover").checked ? "Hover on: the map follows the pointer." : "Hover off."));
  on("seg-opacity", "input", drawAll);
  on("heat-opacity", "input", drawAll);
}

function start() {
  const canvases = ["canvas-image", "canvas-segmentation", "canvas-explanation"].map($);
  tools = new Tools(canvases, {
    size: () => (state.picture ? { h: state.h, w: state.w } : null),
    tool: () => state.tool,
    radius: () => Math.max(1, Number($("brush-radius").value) || 1),
    commit: commitRegion,
    draft: (draft) => {
      state.draft = draft;
      drawAll();
    },
    pointer: (point) => {
      showReadout(point);
      if (point && $("hover").checked && state.labels && !tools.dragging) hoverAt(point, setHoverRegion);
    },
    cursor: (point) => {
      state.cursor = point;
      drawAll();
    },
  });
  initPanels();
  wire();
  setTool("pixel");
  boot();
}

async function boot() {
  setStatus("Connecting to the segcam server…", true);
  try {
    state.info = await api("GET", "api/info");
    fillStatic();
    state.sid = (await api("POST", "api/sessions")).session;
    document.body.dataset.session = state.sid;
    const first = state.info.samples[0];
    if (first) await openImage(() => api("POST", sessionPath(`/samples/${encodeURIComponent(first.id)}`)), first.name);
    else setStatus("Upload an image to begin.");
  } catch (err) {
    fail(err);
  }
  document.body.dataset.ready = "true";
}

start();
