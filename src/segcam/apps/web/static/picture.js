// The picture shown and what the model predicts on it: the image (or the slice of a volume) at
// the model's input size, the predicted labels, the legend, the layers; a new image also picks
// the default class (that of the biggest predicted object) and the whole-class region, another
// model keeps the user's region (and class) when they still apply.

import { api, decodeBase64, loadBitmap } from "./api.js";
import { fillClassSelect, fillLayerSelect, fillLegend } from "./controls.js";
import { cancelJob } from "./explain.js";
import { biggestObjectClass, labelsFromColours } from "./regions.js";
import { clearDownloads, clearMasking, showPinnable } from "./panels.js";
import { $, sessionPath, setStatus, state } from "./state.js";
import { drawAll, showColourBar } from "./views.js";

let pictureSeq = 0;

export function setClass(cls) {
  state.cls = cls;
  $("class").value = String(cls);
}

function regionFits(region) {
  return (region.points ?? []).every(([y, x]) => y >= 0 && x >= 0 && y < state.h && x < state.w);
}

function defaultClass(classes) {
  const background = classes.find((c) => /^background$/i.test(c.name))?.index ?? 0;
  const biggest = biggestObjectClass(state.labels, state.h, state.w, background);
  if (biggest !== null) return biggest;
  return classes.reduce((a, b) => (b.pixels > a.pixels ? b : a)).index;
}

export function showLayerInfo() {
  const layer = state.layers.find((l) => l.name === $("layer").value);
  $("layer-info").textContent = layer
    ? `${layer.name}${layer.readable ? ` (${layer.readable})` : ""} · ${layer.type} · output ${layer.shape.join("×")}` +
      `${layer.name === state.layerDefault ? " · default" : ""}`
    : "";
}

function forgetResult() {
  state.seq += 1;  // replies to requests about the previous picture are stale now
  cancelJob(true);
  state.result = null;
  state.heat = null;
  state.heatBitmap = null;
  showPinnable();
  $("score").textContent = "score –";
  delete $("score").dataset.result;
  showColourBar(null);
  $("title-explanation").textContent = "Explanation";
  clearDownloads();
  clearMasking();
}

/** The slice controls of a volume: the axis and the slice along it, in the shape slices come from. */
function showVolume(volume) {
  $("volume").hidden = !state.view;
  if (!state.view) return;
  state.volumeShape = volume ?? state.image.shape;
  state.view.index ??= Math.floor(state.volumeShape[state.view.axis] / 2);
  setSliceRange();
}

/** After a prediction: the class and region the user had, where they still apply. */
function keepOrReset(change, classes, sameSize) {
  if (change === "image" || state.cls === null || !classes.some((c) => c.index === state.cls)) {
    state.cls = defaultClass(classes);
  }
  if (change === "image" || (change === "model" && !sameSize) || !regionFits(state.region)) {
    state.region = { kind: "class" };
  }
}

/**
 * Show the picture (slice) with its prediction.  change: "image" (a new image: layers, class and
 * region reset), "model" (another model: layers reset, region kept when the picture keeps its size,
 * class kept when the model has it) or "view" (another slice: class and region kept where they fit).
 * A volume's view without an index gets the middle slice of the shape its slices come from
 * (the predict reply's "volume" for a 3-D model, else the image's).
 */
export async function showPicture(change) {
  const fresh = change !== "view";
  const seq = ++pictureSeq;
  const iid = encodeURIComponent(state.image.image);
  const query = new URLSearchParams({ model: state.model });
  if (state.view) for (const [k, v] of Object.entries(state.view)) query.set(k, String(v));
  const body = { image: state.image.image, model: state.model, ...(state.view ? { view: state.view } : {}) };
  setStatus("Predicting…", true);
  const [picture, prediction, layers] = await Promise.all([
    loadBitmap(sessionPath(`/images/${iid}/view.png?${query}`)),
    api("POST", sessionPath("/predict"), body),
    fresh ? api("GET", sessionPath(`/layers?${query}&image=${iid}`)) : null,
  ]);
  const labelsBitmap = await loadBitmap(prediction.labels_png);
  if (seq !== pictureSeq) return false;
  const [h, w] = prediction.shape;
  const sameSize = h === state.h && w === state.w;
  Object.assign(state, { picture, labelsBitmap, classes: prediction.classes, h, w });
  showVolume(prediction.volume);
  state.labels = prediction.labels ? Uint16Array.from(decodeBase64(prediction.labels)) : labelsFromColours(labelsBitmap, prediction.classes);
  state.labelsVersion = (state.labelsVersion ?? 0) + 1;
  fillLegend($("legend"), prediction.classes, (cls) => {
    setClass(cls);
    $("class").dispatchEvent(new Event("change"));
  });
  if (layers) {
    Object.assign(state, { layers: layers.layers, layerDefault: layers.default });
    fillLayerSelect($("layer"), layers.layers, layers.default, layers.default);
    showLayerInfo();
  }
  keepOrReset(change, prediction.classes, sameSize);
  state.cursor = null;
  fillClassSelect($("class"), prediction.classes, state.cls);
  forgetResult();
  drawAll();
  setStatus("Predicted.");
  return true;
}

/** The view of a new image: a volume's middle slice along axis 0 (the index is set by showPicture). */
export function viewOf(image) {
  return image.dims === 3 ? { axis: 0 } : null;
}

export function setSliceRange() {
  const size = state.volumeShape[state.view.axis];
  $("axis").value = String(state.view.axis);
  $("slice").max = String(size - 1);
  $("slice").value = String(state.view.index);
  $("slice-value").textContent = `${state.view.index} / ${size - 1}`;
}
