// The three views share one picture size h×w.  Each canvas holds the picture at an integer
// scale k (crisp pixels and room for thin outlines); CSS scales it further with
// image-rendering: pixelated.  Pointer positions map back to picture pixels [y, x].

const TARGET_SIZE = 512;

/** Integer scale of the canvas backing store for an h×w picture. */
export function scaleFor(h, w) {
  return Math.max(1, Math.min(8, Math.floor(TARGET_SIZE / Math.max(h, w))));
}

/** Give the canvas the picture's size (times its scale) and aspect ratio. */
function sizeCanvas(canvas, h, w) {
  const k = scaleFor(h, w);
  if (canvas.width !== w * k || canvas.height !== h * k) {
    canvas.width = w * k;
    canvas.height = h * k;
  }
  canvas.style.aspectRatio = `${w} / ${h}`;
  Object.assign(canvas.dataset, { h: String(h), w: String(w) });
  return k;
}

/** The picture pixel [y, x] under a client position (clamped to the picture). */
export function toPixel(canvas, clientX, clientY, h, w) {
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor(((clientX - rect.left) / rect.width) * w);
  const y = Math.floor(((clientY - rect.top) / rect.height) * h);
  return [Math.min(h - 1, Math.max(0, y)), Math.min(w - 1, Math.max(0, x))];
}

/** The edges between pixels inside and outside the mask, as one path in canvas units. */
export function outlinePath(mask, h, w, k) {
  const path = new Path2D();
  const edge = (x0, y0, x1, y1) => {
    path.moveTo(x0 * k, y0 * k);
    path.lineTo(x1 * k, y1 * k);
  };
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      if (y === 0 || !mask[i - w]) edge(x, y, x + 1, y);
      if (y === h - 1 || !mask[i + w]) edge(x, y + 1, x + 1, y + 1);
      if (x === 0 || !mask[i - 1]) edge(x, y, x, y + 1);
      if (x === w - 1 || !mask[i + 1]) edge(x + 1, y, x + 1, y + 1);
    }
  }
  return path;
}

function strokeTwice(ctx, path, k, colour = "#ffffff") {
  ctx.lineCap = "square";
  ctx.lineWidth = Math.max(2, k / 2);
  ctx.strokeStyle = "rgba(0, 0, 0, 0.8)";
  ctx.stroke(path);
  ctx.lineWidth = Math.max(1, k / 4);
  ctx.strokeStyle = colour;
  ctx.stroke(path);
}

function polylinePath(points, k) {
  const path = new Path2D();
  points.forEach(([y, x], i) => (i ? path.lineTo((x + 0.5) * k, (y + 0.5) * k) : path.moveTo((x + 0.5) * k, (y + 0.5) * k)));
  for (const [y, x] of points) path.rect(x * k + k / 4, y * k + k / 4, k / 2, k / 2);
  return path;
}

/**
 * Draw one view: the picture, an optional overlay (labels or heatmap) at some opacity, the
 * region's outline, an unfinished polyline (polygon being drawn) and the keyboard cursor.
 */
export function drawView(canvas, view) {
  const { base, overlay, opacity = 1, outline, polyline, cursor, h, w } = view;
  const k = sizeCanvas(canvas, h, w);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (base) ctx.drawImage(base, 0, 0, w * k, h * k);
  if (overlay && opacity > 0) {
    ctx.globalAlpha = opacity;
    ctx.drawImage(overlay, 0, 0, w * k, h * k);
    ctx.globalAlpha = 1;
  }
  if (outline) strokeTwice(ctx, outline, k);
  if (polyline?.length) strokeTwice(ctx, polylinePath(polyline, k), k, "#ffe14d");
  if (cursor) {
    const path = new Path2D();
    path.rect(cursor[1] * k, cursor[0] * k, k, k);
    strokeTwice(ctx, path, k, "#ff4df0");
  }
}

// The fallback colour map when the server names none: matplotlib's "jet" as piecewise-linear
// (position, value) stops per channel.
const JET = [
  [[0, 0], [0.35, 0], [0.66, 1], [0.89, 1], [1, 0.5]],
  [[0, 0], [0.125, 0], [0.375, 1], [0.64, 1], [0.91, 0], [1, 0]],
  [[0, 0.5], [0.11, 1], [0.34, 1], [0.65, 0], [1, 0]],
];

function interpolate(stops, t) {
  for (let i = 1; i < stops.length; i++) {
    const [t0, v0] = stops[i - 1];
    const [t1, v1] = stops[i];
    if (t <= t1) return v0 + ((v1 - v0) * (t - t0)) / (t1 - t0 || 1);
  }
  return stops[stops.length - 1][1];
}

const jet = (v) => JET.map((stops) => Math.round(255 * interpolate(stops, v / 255)));
const hexRgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));

/** RGBA per byte value v of a map: the colour map's colour, transparent at 0, alpha rising with v. */
function lutOf(rgb) {
  return rgb.map((colour, v) => [...colour, v > 0 ? Math.min(255, 64 + v) : 0]);
}

let heatRgb = Array.from({ length: 256 }, (_, v) => jet(v));  // [r, g, b] per byte value
let heatLut = lutOf(heatRgb);

/**
 * Use the server's colour map (/api/info "heat_colors": 256 "#rrggbb", segcam's figures' map) for
 * heatmaps and the colour bar; without one (an older server) jet stays.
 */
export function setHeatColours(colours) {
  if (!Array.isArray(colours) || colours.length !== 256) return;
  heatRgb = colours.map(hexRgb);
  heatLut = lutOf(heatRgb);
}

/** The colour map as a CSS gradient from 0 (left) to 1 (right), for the colour bar. */
export function heatGradient() {
  const stops = Array.from({ length: 17 }, (_, i) => Math.min(255, i * 16));
  return `linear-gradient(to right, ${stops.map((v) => `rgb(${heatRgb[v].join(", ")}) ${((100 * v) / 255).toFixed(1)}%`).join(", ")})`;
}

/** The heatmap's bytes (one per pixel, value/255 of the map) as a drawable bitmap, coloured here. */
export function heatBitmap(bytes, h, w) {
  const rgba = new Uint8ClampedArray(h * w * 4);
  for (let i = 0; i < h * w; i++) rgba.set(heatLut[bytes[i]], i * 4);
  return createImageBitmap(new ImageData(rgba, w, h));
}
