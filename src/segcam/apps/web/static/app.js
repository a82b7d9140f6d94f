// segcam serve — the page.  On load it opens a session, shows the first bundled scene with the
// default model, predicts, and explains the class of the biggest predicted object (whole class).
// Every later control change re-explains (long methods wait for the Explain button).  A request
// that fails leaves the page on what it showed before.

import { api } from "./api.js";
import { heatGradient, setHeatColours } from "./canvas.js";
import { buildOptionsForm, el, fillModelSelect } from "./controls.js";
import { cancelJob, explain, hoverAt } from "./explain.js";
import { initPanels } from "./panels.js";
import { setClass, setSliceRange, showLayerInfo, showPicture, viewOf } from "./picture.js";
import { $, currentMethod, dismissError, fail, sessionPath, setStatus, showError, state } from "./state.js";
import { Tools } from "./tools.js";
import { drawAll, fitControls, showReadout } from "./views.js";

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

/** Show `name` as the tool in use (the one that draws regions like the current one). */
function markTool(name) {
  state.tool = name;
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === name));
  }
  $("tool-hint").textContent = TOOL_HINTS[name];
  $("brush-row").hidden = name !== "brush";
}

function setTool(name) {
  markTool(name);
  tools.reset();
  if (name === "class" || name === "all") commitRegion({ kind: name }, null);
}

/** Show the picture after a change; the tool follows a region the page reset. True when shown. */
async function showChanged(change) {
  const region = state.region;
  if (!(await showPicture(change))) return false;
  if (state.region !== region) markTool(state.region.kind);
  dismissError();
  return true;
}

function showImageName(image) {
  $("image-name").textContent = `${image.name} · ${image.shape.join("×")}` +
    `${image.channels ? ` · ${image.channels} channel${image.channels > 1 ? "s" : ""}` : ""}`;
}

let openSeq = 0;
let shownSample = "";

/**
 * Open an image (request: resolves to its image info), show it and explain it.  When the upload
 * or its prediction fails, the page stays on the image it showed (name, slice, sample choice).
 */
async function openImage(request, label) {
  const seq = ++openSeq;
  const previous = { image: state.image, view: state.view };
  setStatus(`Loading ${label}…`, true);
  try {
    const image = await request();
    Object.assign(state, { image, view: viewOf(image) });
    if (await showChanged("image")) {
      showImageName(image);
      shownSample = $("sample").value;
      await autoExplain();
    }
  } catch (err) {
    if (seq === openSeq) {
      Object.assign(state, previous);
      if (shownSample) $("sample").value = shownSample;
    }
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
    if (await showChanged("view")) await autoExplain();
  } catch (err) {
    fail(err);
  }
}

const dimsOf = (name) => state.info.models.find((m) => m.name === name)?.dims;

/**
 * Show and explain the picture with model `name`; the region (and class) stay where they apply.
 * A volume keeps its slice when both models are 2-D (a 3-D model's slices may be resized).
 */
async function switchModel(name) {
  const previous = { model: state.model, view: state.view };
  state.model = name;
  $("model").value = name;
  if (state.view && (dimsOf(previous.model) === 3 || dimsOf(name) === 3)) state.view = { axis: state.view.axis };
  if (!state.image) return;
  try {
    if (await showChanged("model")) await autoExplain();
  } catch (err) {
    Object.assign(state, previous);
    $("model").value = state.model;
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

function fillStatic() {
  const info = state.info;
  state.model = info.models[0].name;
  fillModelSelect($("model"), info.models, state.model);
  $("method").replaceChildren(...info.methods.map((m) => el("option", { value: m.name }, `${m.name}${m.long ? " (long)" : ""}`)));
  $("method").value = info.default_method ?? info.methods[0].name;
  methodChanged();
  $("sample").replaceChildren(...info.samples.map((s) => el("option", { value: s.id }, s.name)));
  $("model-upload").hidden = !info.allow_model_upload;
  $("version").textContent = `segcam ${info.version}`;
  setHeatColours(info.heat_colors);
  $("heat-bar").style.background = heatGradient();
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
    fillModelSelect($("model"), state.info.models, state.model);
    await switchModel(model.name);
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
    $("upload").value = "";  // choosing the same file again is a change too
    if (file) upload(file);
  });
  on("model", "change", () => switchModel($("model").value));
  on("model-add", "click", addModel);
  on("axis", "change", () => {
    state.view = { axis: Number($("axis").value) };  // the middle slice, once the prediction gives the shape
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
    if (state.region.kind === "object") {
      state.region = { kind: "class" };
      markTool("class");
    }
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
    notice: (text) => setStatus(text),
  });
  initPanels();
  wire();
  markTool(state.region.kind);
  fitControls();
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
