// The picture shown and what the model predicts on it: the image (or the slice of a volume) at
// the model's input size, the predicted labels, the legend, the layers; a new image or model
// also picks the default class (that of the biggest predicted object) and the whole-class region.

import { api, decodeBase64, loadBitmap } from "./api.js";
import { fillClassSelect, fillLayerSelect, fillLegend } from "./controls.js";
import { cancelJob } from "./explain.js";
import { biggestObjectClass, labelsFromColours } from "./regions.js";
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
  $("pin").disabled = true;
  $("score").textContent = "score –";
  delete $("score").dataset.result;
  showColourBar(null);
  $("title-explanation").textContent = "Explanation";
  for (const id of ["dl-heatmap-png", "dl-heatmap-npy", "dl-figure"]) {
    $(id).removeAttribute("href");
    $(id).setAttribute("aria-disabled", "true");
  }
}

/** Show the picture (slice) with its prediction; fresh: a new image or model (layers, class reset). */
export async function showPicture(fresh) {
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
  Object.assign(state, { picture, labelsBitmap, classes: prediction.classes, h: prediction.shape[0], w: prediction.shape[1] });
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
  if (fresh || state.cls === null || !prediction.classes.some((c) => c.index === state.cls)) {
    state.cls = defaultClass(prediction.classes);
    state.region = { kind: "class" };
  }
  if (!regionFits(state.region)) state.region = { kind: "class" };
  state.cursor = null;
  fillClassSelect($("class"), prediction.classes, state.cls);
  forgetResult();
  drawAll();
  setStatus("Predicted.");
  return true;
}

export function setupVolume(image) {
  const volume = image.dims === 3;
  $("volume").hidden = !volume;
  state.view = volume ? { axis: 0, index: Math.floor(image.shape[0] / 2) } : null;
  if (volume) setSliceRange();
}

export function setSliceRange() {
  const size = state.image.shape[state.view.axis];
  $("axis").value = String(state.view.axis);
  $("slice").max = String(size - 1);
  $("slice").value = String(state.view.index);
  $("slice-value").textContent = `${state.view.index} / ${size - 1}`;
}
