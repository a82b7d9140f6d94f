// Panels around the current result: downloads and the reproducing command / Python snippet, the
// masking test, and pinned copies of explanations kept for comparison.

import { api } from "./api.js";
import { drawView, outlinePath, scaleFor } from "./canvas.js";
import { el } from "./controls.js";
import { describeRegion, regionMask } from "./regions.js";
import { $, dismissError, fail, fmt, layerWords, sessionPath, setStatus, state } from "./state.js";

const DOWNLOADS = { "dl-heatmap-png": "heatmap.png", "dl-heatmap-npy": "heatmap.npy", "dl-figure": "figure.png",
  "dl-region-npy": "region.npy", "dl-image-npy": "image.npy" };
const NEEDED_BY_COMMAND = new Set(["region.npy", "image.npy"]);  // offered only when the command reads them

function resultPath(result, file) {
  return sessionPath(`/results/${encodeURIComponent(result.result)}/${file}`);
}

/**
 * Point the download links at the result's files and show its command and snippet; region.npy
 * (a brush or other region the command line cannot spell, for --mask) and image.npy (a volume's
 * slice given to a 2-D model) appear only when the command reads them.
 */
export function showDownloads(result) {
  const command = result.command ?? "";
  for (const [id, file] of Object.entries(DOWNLOADS)) {
    const link = $(id);
    link.href = resultPath(result, file);
    link.removeAttribute("aria-disabled");
    link.hidden = NEEDED_BY_COMMAND.has(file) && !command.includes(file);
  }
  $("command").textContent = command;
  $("python").textContent = result.python ?? "";
}

/** Disable the download links (no result). */
export function clearDownloads() {
  for (const [id, file] of Object.entries(DOWNLOADS)) {
    $(id).removeAttribute("href");
    $(id).setAttribute("aria-disabled", "true");
    $(id).hidden = NEEDED_BY_COMMAND.has(file);
  }
}

async function copyText(id) {
  const text = $(id).textContent;
  try {
    await navigator.clipboard.writeText(text);
    setStatus(`Copied the ${id === "command" ? "command" : "Python snippet"}.`);
  } catch {
    const range = document.createRange();
    range.selectNodeContents($(id));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    setStatus("The browser refused the clipboard; the text is selected: press Ctrl+C (⌘C) to copy it.");
  }
}

export function clearMasking() {
  $("mask-image").hidden = true;
  $("mask-image").removeAttribute("src");
  $("mask-dice").textContent = "–";
  $("mask-kept").textContent = "–";
}

const sameSettings = (body) => body.threshold === Number($("mask-threshold").value) && body.baseline === $("mask-baseline").value;

async function runMasking() {
  const result = state.result;
  if (!result) {
    fail(new Error("there is no explanation to test yet; explain a region first (click the picture)."));
    return;
  }
  const body = { threshold: Number($("mask-threshold").value), baseline: $("mask-baseline").value };
  setStatus("Running the masking test…", true);
  try {
    const answer = await api("POST", resultPath(result, "masking"), body);
    if (state.result !== result || !sameSettings(body)) return;
    $("mask-image").src = answer.masked_png;
    $("mask-image").hidden = false;
    $("mask-dice").textContent = fmt(answer.dice);
    $("mask-kept").textContent = `${fmt(100 * answer.kept)} %`;
    dismissError();
    setStatus(`Masking test: keeping the pixels above ${body.threshold.toFixed(2)} of the map's maximum ` +
      `(${fmt(100 * answer.kept)} % of the image) gives Dice ${fmt(answer.dice)}.`);
  } catch (err) {
    fail(err);
  }
}

function optionsText(options) {
  const entries = Object.entries(options ?? {});
  return entries.length ? ` (${entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")})` : "";
}

/** The caption of a result: model, method and options, layer, class, region and score. */
function captionOf(result, region) {
  return [`${state.model} · ${result.method}${optionsText(result.options)}`,
    `${layerWords(result)} · class ${result.cls} ${result.class_name}`,
    `${describeRegion(region)} (${result.region_pixels} px) · score ${fmt(result.score)}`];
}

let pinCount = 0;

/** Copy the current explanation (picture + heatmap + region outline) into the row of pins (once). */
function pin() {
  if (!state.result || !state.heatBitmap || isPinned(state.result)) return;
  pinCount += 1;
  const canvas = el("canvas", { class: "pin-canvas", role: "img" });
  const region = state.resultRegion;
  const mask = regionMask(region, state.h, state.w, state.labels, state.result.cls);
  drawView(canvas, { base: state.picture, overlay: state.heatBitmap, opacity: Number($("heat-opacity").value),
    outline: mask ? outlinePath(mask, state.h, state.w, scaleFor(state.h, state.w)) : null, h: state.h, w: state.w });
  const lines = captionOf(state.result, region);
  canvas.setAttribute("aria-label", `Pinned explanation ${pinCount}: ${lines.join("; ")}`);
  const close = el("button", { type: "button", class: "pin-close", "aria-label": `Remove pinned explanation ${pinCount}`,
    title: "Remove" }, "×");
  const panel = el("figure", { class: "pin", dataset: { testid: "pin-panel", result: state.result.result } },
    close, canvas, el("figcaption", {}, ...lines.map((line) => el("span", {}, line))));
  close.addEventListener("click", () => {
    panel.remove();
    $("pins-empty").hidden = $("pins").children.length > 0;
    showPinnable();
    $("pin").focus();
  });
  $("pins").append(panel);
  $("pins-empty").hidden = true;
  showPinnable();
  setStatus(`Pinned: ${lines.join(" · ")}.`);
}

const isPinned = (result) => [...$("pins").children].some((panel) => panel.dataset.result === result.result);

/** The Pin button: enabled when there is an explanation not pinned yet. */
export function showPinnable() {
  const pinned = Boolean(state.result) && isPinned(state.result);
  $("pin").disabled = !state.result || pinned;
  $("pin").textContent = pinned ? "Pinned" : "Pin this explanation";
}

export function initPanels() {
  $("copy-command").addEventListener("click", () => copyText("command"));
  $("copy-python").addEventListener("click", () => copyText("python"));
  $("mask-run").addEventListener("click", runMasking);
  $("mask-threshold").addEventListener("input", () => {
    $("mask-threshold-value").textContent = Number($("mask-threshold").value).toFixed(2);
    clearMasking();
  });
  $("mask-baseline").addEventListener("change", clearMasking);
  $("pin").addEventListener("click", pin);
}
