// What the page knows (one object, shared by the modules) and how it talks to the user: the
// status line and the dismissable error region.

import { isAbort } from "./api.js";

export const $ = (id) => document.getElementById(id);

export const state = {
  info: null,        // GET /api/info
  sid: null,         // session id
  model: null,       // model name
  image: null,       // image info {image, name, dims, shape, channels}
  view: null,        // {axis, index} for volumes, else null
  h: 0, w: 0,        // picture shown
  picture: null,     // ImageBitmap of the picture
  labelsBitmap: null,
  labels: null,      // Uint16Array h*w of predicted classes
  classes: [],       // prediction's classes [{index, name, pixels, color}]
  layers: [],
  layerDefault: null,
  cls: null,
  region: { kind: "class" },
  tool: "pixel",
  draft: null,       // unfinished region being drawn
  cursor: null,      // keyboard cursor [y, x]
  pointer: null,     // pixel under the pointer (or keyboard cursor) [y, x], for the readout
  volumeShape: null, // (D, H, W) the slices are taken from: the model's for a resizing 3-D model
  optionValues: {},  // method name -> {option: value} the user set
  result: null,      // last explain result
  heat: null,        // Uint8Array h*w of the result's heatmap
  heatBitmap: null,
  seq: 0,            // explain requests issued; a reply to an older one is stale
  job: null,         // {id} of the running long job
};

export const sessionPath = (rest = "") => `api/sessions/${encodeURIComponent(state.sid)}${rest}`;

function currentModel() {
  return state.info.models.find((m) => m.name === state.model) ?? state.info.models[0];
}

export function currentMethod() {
  const name = $("method").value;
  return state.info.methods.find((m) => m.name === name) ?? state.info.methods[0];
}

export function setStatus(text, busy = false) {
  const status = $("status");
  status.textContent = text;
  status.dataset.busy = String(busy);
}

export function showError(message) {
  $("error-message").textContent = message;
  $("error").hidden = false;
  setStatus("Something went wrong — see the message at the top.");
}

export function dismissError() {
  $("error").hidden = true;
  $("error-message").textContent = "";
}

/** Report a failed request (an abandoned one is not a failure). */
export function fail(err) {
  if (isAbort(err)) return;
  showError(err?.message ?? String(err));
}

/** Where a result's map was taken: "at LAYER", or on the input pixels for input methods. */
export function layerWords(result) {
  const method = state.info?.methods.find((m) => m.name === result.method);
  const onInput = method?.on_input || !result.layer || result.layer === "<input>";
  return onInput ? "on the input pixels" : `at ${result.layer}`;
}

/** Format a number with about three significant digits. */
export function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(2);
  return String(Number(value.toPrecision(3)));
}

export function className(index) {
  return state.classes.find((c) => c.index === index)?.name ?? currentModel()?.class_names?.[index] ?? `class ${index}`;
}
