// The three views (image, predicted segmentation, explanation) drawn from the state, the
// readout of the pixel under the pointer, and the height of the settings column beside them.

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

/** The map's value at a pixel as a share of its maximum (byte / 255), or null without a map. */
function shareAt([y, x]) {
  if (!state.heat || !state.result) return null;
  return state.heat[y * state.w + x] / 255;
}

/**
 * Show what is under the pointer (or keyboard cursor): coordinates, predicted class, the map's
 * value as a share of its maximum (what the colours show) and the raw value (share × maximum).
 */
export function showReadout(point) {
  state.pointer = point;
  const out = $("cursor-value");
  if (!point || point[0] >= state.h || point[1] >= state.w) {
    out.textContent = "Point at the picture to read the map.";
    return;
  }
  const [y, x] = point;
  const parts = [`y ${y}, x ${x}`];
  if (state.labels) parts.push(`predicted ${className(state.labels[y * state.w + x])}`);
  const share = shareAt(point);
  if (share !== null) parts.push(`map ${share.toFixed(2)} of its maximum (raw ${fmt(share * state.result.max)})`);
  out.textContent = parts.join(" · ");
}

/** The colour bar: 0 … 1 of the map's maximum; the raw maximum as text. */
export function showColourBar(result) {
  $("heat-raw").textContent = result ? `maximum ${fmt(result.max)}` : "";
}

/** Where the settings column starts on the page: side by side, it is as tall as the window below
 * that (CSS --controls-top), kept up to date as the header and the error above it change size. */
export function fitControls() {
  const measure = () => {
    const layout = $("layout");
    const top = layout.getBoundingClientRect().top + window.scrollY + parseFloat(getComputedStyle(layout).paddingTop);
    document.documentElement.style.setProperty("--controls-top", `${Math.round(top)}px`);
  };
  for (const id of ["header", "error"]) new ResizeObserver(measure).observe($(id));
}
