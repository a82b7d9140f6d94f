// The three views (image, predicted segmentation, explanation) drawn from the state, and the
// readout of the pixel under the pointer.

import { drawView, outlinePath, scaleFor } from "./canvas.js";
import { regionMask } from "./regions.js";
import { $, className, fmt, state } from "./state.js";

let outlineCache = { key: null, path: null };

function regionOutline(region) {
  if (!state.h) return null;
  const key = JSON.stringify([region, state.cls, state.h, state.w, state.labelsVersion ?? 0]);
  if (outlineCache.key === key) return outlineCache.path;
  const mask = regionMask(region, state.h, state.w, state.labels, state.cls);
  const path = mask ? outlinePath(mask, state.h, state.w, scaleFor(state.h, state.w)) : null;
  outlineCache = { key, path };
  return path;
}

function draftOutline() {
  const draft = state.draft;
  if (!draft?.region || !state.h) return null;
  const mask = regionMask(draft.region, state.h, state.w, state.labels, state.cls);
  return outlinePath(mask, state.h, state.w, scaleFor(state.h, state.w));
}

/** Redraw the three views. */
export function drawAll() {
  if (!state.picture) return;
  const outline = state.draft ? draftOutline() : regionOutline(state.region);
  const common = { base: state.picture, h: state.h, w: state.w, outline, polyline: state.draft?.polyline, cursor: state.cursor };
  drawView($("canvas-image"), common);
  drawView($("canvas-segmentation"), { ...common, overlay: state.labelsBitmap, opacity: Number($("seg-opacity").value) });
  drawView($("canvas-explanation"), { ...common, overlay: state.heatBitmap, opacity: Number($("heat-opacity").value) });
}

/** The map's value at a pixel: byte / 255 × the raw maximum. */
function heatAt([y, x]) {
  if (!state.heat || !state.result) return null;
  return (state.heat[y * state.w + x] / 255) * state.result.max;
}

/** Show what is under the pointer (or keyboard cursor): coordinates, predicted class, map value. */
export function showReadout(point) {
  const out = $("cursor-value");
  if (!point || !state.h) {
    out.textContent = "Point at the picture to read the map.";
    return;
  }
  const [y, x] = point;
  const parts = [`y ${y}, x ${x}`];
  if (state.labels) parts.push(`predicted ${className(state.labels[y * state.w + x])}`);
  const value = heatAt(point);
  if (value !== null) parts.push(`map ${fmt(value)}`);
  out.textContent = parts.join(" · ");
}

/** The colour bar's ends: 0 and the raw maximum of the map shown. */
export function showColourBar(result) {
  $("heat-min").textContent = fmt(result?.min ?? 0);
  $("heat-max").textContent = result ? fmt(result.max) : "–";
}
