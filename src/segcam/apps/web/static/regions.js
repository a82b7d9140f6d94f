// Regions on the picture shown: the spec sent to the server ({kind, points, radius}) and the same
// region rasterised here (a Uint8Array mask, row-major h×w) so its outline can be drawn.  The
// rules follow segcam's regions: box corners included, polygon = pixel centres inside or on an
// edge (even-odd), brush = discs of the radius along the stroke, object = the 4-connected
// predicted instance under the pixel.

/** The most points a region spec may carry (the server refuses more). */
export const MAX_POINTS = 256;

/**
 * A brush stroke with at most MAX_POINTS points: points closer than radius/2 to the last one kept
 * are dropped (the discs overlap anyway), the stroke's end is kept, and a stroke still too long
 * is subsampled evenly along its points.
 */
export function thinStroke(points, radius) {
  const gap2 = Math.max(1, radius / 2) ** 2;
  const kept = points.length ? [points[0]] : [];
  for (const p of points.slice(1)) {
    const last = kept[kept.length - 1];
    if ((p[0] - last[0]) ** 2 + (p[1] - last[1]) ** 2 >= gap2) kept.push(p);
  }
  const end = points[points.length - 1];
  if (points.length > 1 && kept[kept.length - 1] !== end) kept.push(end);
  if (kept.length <= MAX_POINTS) return kept;
  return Array.from({ length: MAX_POINTS }, (_, i) => kept[Math.round((i * (kept.length - 1)) / (MAX_POINTS - 1))]);
}

/** A region's short description for captions and the status line. */
export function describeRegion(region) {
  const p = region.points ?? [];
  const at = (q) => `(${q[0]}, ${q[1]})`;
  switch (region.kind) {
    case "pixel": return `pixel ${at(p[0])}`;
    case "box": return `box ${at(p[0])}–${at(p[1])}`;
    case "polygon": return `polygon of ${p.length} vertices`;
    case "brush": return `brush stroke of ${p.length} points, radius ${region.radius}`;
    case "object": return `object at ${at(p[0])}`;
    case "class": return "whole class";
    default: return "whole image";
  }
}

function fill(h, w, inside) {
  const mask = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) if (inside(y, x)) mask[y * w + x] = 1;
  }
  return mask;
}

function distanceToSegment2(y, x, [y1, x1], [y2, x2]) {
  const dy = y2 - y1;
  const dx = x2 - x1;
  const length2 = dy * dy + dx * dx;
  const t = length2 ? Math.min(1, Math.max(0, ((y - y1) * dy + (x - x1) * dx) / length2)) : 0;
  return (y - y1 - t * dy) ** 2 + (x - x1 - t * dx) ** 2;
}

function insidePolygon(y, x, vertices) {
  let inside = false;
  for (let i = 0; i < vertices.length; i++) {
    const a = vertices[i];
    const b = vertices[(i + 1) % vertices.length];
    if (distanceToSegment2(y, x, a, b) <= 1e-12) return true;
    if ((a[0] > y) !== (b[0] > y) && x < a[1] + ((y - a[0]) * (b[1] - a[1])) / (b[0] - a[0])) inside = !inside;
  }
  return inside;
}

function strokeMask(h, w, points, radius) {
  const mask = new Uint8Array(h * w);
  const r2 = radius * radius;
  const segments = points.length === 1 ? [[points[0], points[0]]] : points.slice(1).map((q, i) => [points[i], q]);
  for (const [a, b] of segments) {
    const y0 = Math.max(0, Math.floor(Math.min(a[0], b[0]) - radius));
    const y1 = Math.min(h - 1, Math.ceil(Math.max(a[0], b[0]) + radius));
    const x0 = Math.max(0, Math.floor(Math.min(a[1], b[1]) - radius));
    const x1 = Math.min(w - 1, Math.ceil(Math.max(a[1], b[1]) + radius));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) if (distanceToSegment2(y, x, a, b) <= r2) mask[y * w + x] = 1;
    }
  }
  return mask;
}

/** The 4-connected component of equal labels that holds pixel (y, x). */
function component(labels, h, w, y, x) {
  const mask = new Uint8Array(h * w);
  const label = labels[y * w + x];
  const stack = [y * w + x];
  mask[y * w + x] = 1;
  while (stack.length) {
    const i = stack.pop();
    const cy = Math.floor(i / w);
    const cx = i % w;
    const neighbours = [cy > 0 && i - w, cy < h - 1 && i + w, cx > 0 && i - 1, cx < w - 1 && i + 1];
    for (const j of neighbours) {
      if (j !== false && !mask[j] && labels[j] === label) {
        mask[j] = 1;
        stack.push(j);
      }
    }
  }
  return mask;
}

/** The region as a mask over the picture (labels: the predicted class of each pixel). */
export function regionMask(region, h, w, labels, cls) {
  const p = region.points ?? [];
  switch (region.kind) {
    case "pixel": return fill(h, w, (y, x) => y === p[0][0] && x === p[0][1]);
    case "box": {
      const [y0, y1] = [Math.min(p[0][0], p[1][0]), Math.max(p[0][0], p[1][0])];
      const [x0, x1] = [Math.min(p[0][1], p[1][1]), Math.max(p[0][1], p[1][1])];
      return fill(h, w, (y, x) => y >= y0 && y <= y1 && x >= x0 && x <= x1);
    }
    case "polygon": return fill(h, w, (y, x) => insidePolygon(y, x, p));
    case "brush": return strokeMask(h, w, p, region.radius);
    case "object": return labels ? component(labels, h, w, p[0][0], p[0][1]) : null;
    case "class": return labels ? labels.map((v) => (v === cls ? 1 : 0)) : null;
    default: return fill(h, w, () => true);
  }
}

/** The class of the biggest connected predicted object that is not background (null if none). */
export function biggestObjectClass(labels, h, w, background) {
  const seen = new Uint8Array(h * w);
  let best = null;
  let bestSize = 0;
  for (let i = 0; i < labels.length; i++) {
    if (seen[i] || labels[i] === background) continue;
    const mask = component(labels, h, w, Math.floor(i / w), i % w);
    let size = 0;
    for (let j = 0; j < mask.length; j++) {
      if (mask[j]) {
        seen[j] = 1;
        size++;
      }
    }
    if (size > bestSize) [best, bestSize] = [labels[i], size];
  }
  return best;
}

/** Class indices of a colour-coded label picture, matching each pixel's colour to the legend's. */
export function labelsFromColours(bitmap, classes) {
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const byColour = new Map(classes.map((c) => [parseInt(c.color.slice(1, 7), 16), c.index]));
  const labels = new Uint16Array(bitmap.width * bitmap.height);
  for (let i = 0; i < labels.length; i++) {
    const key = (rgba[4 * i] << 16) | (rgba[4 * i + 1] << 8) | rgba[4 * i + 2];
    labels[i] = byColour.get(key) ?? 0;
  }
  return labels;
}
