// Region tools on the three views, by pointer and by keyboard.  The tools only build region specs;
// the host (app.js) decides what to do with them:
//   host.size()          -> {h, w} of the picture, or null before one is shown
//   host.tool()          -> "pixel" | "box" | "polygon" | "brush" | "object" | "class" | "all"
//   host.radius()        -> brush radius in pixels
//   host.commit(region, point) a finished region (point: the pixel that finished it)
//   host.draft(draft)    an unfinished one: {region} (box, brush) or {polyline} (polygon), or null
//   host.pointer(point)  the pixel under the pointer (null when it leaves)
//   host.cursor(point)   the keyboard cursor moved
//   host.notice(text)    something to tell the user (a tool's limit reached)

import { toPixel } from "./canvas.js";
import { MAX_POINTS, thinStroke } from "./regions.js";

const CLICK_TOOLS = new Set(["pixel", "object", "class", "all"]);

export class Tools {
  constructor(canvases, host) {
    this.host = host;
    this.canvases = canvases;
    this.start = null;     // box: first corner
    this.points = [];      // polygon vertices / brush stroke
    this.dragging = false;
    this.cursorAt = null;  // keyboard cursor [y, x]
    for (const canvas of canvases) this.listen(canvas);
    document.addEventListener("keydown", (event) => this.onDocumentKey(event));
  }

  /** Drop any unfinished region (the tool changed, or Escape). */
  reset() {
    this.start = null;
    this.points = [];
    this.dragging = false;
    this.host.draft(null);
  }

  pixelOf(canvas, event) {
    const size = this.host.size();
    if (!size) return null;
    return toPixel(canvas, event.clientX, event.clientY, size.h, size.w);
  }

  listen(canvas) {
    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      const p = this.pixelOf(canvas, event);
      if (!p) return;
      canvas.setPointerCapture(event.pointerId);
      this.down(p);
    });
    canvas.addEventListener("pointermove", (event) => {
      const p = this.pixelOf(canvas, event);
      if (!p) return;
      this.host.pointer(p);
      if (this.dragging) this.move(p);
    });
    canvas.addEventListener("pointerup", (event) => {
      const p = this.pixelOf(canvas, event);
      if (p && this.dragging) this.up(p);
    });
    canvas.addEventListener("pointerleave", () => this.host.pointer(null));
    canvas.addEventListener("dblclick", (event) => {
      event.preventDefault();
      if (this.host.tool() === "polygon") this.closePolygon();
    });
    canvas.addEventListener("keydown", (event) => this.onCanvasKey(event));
  }

  down(p) {
    const tool = this.host.tool();
    if (CLICK_TOOLS.has(tool)) {
      this.host.commit(tool === "class" || tool === "all" ? { kind: tool } : { kind: tool, points: [p] }, p);
    } else if (tool === "box") {
      this.start = p;
      this.dragging = true;
      this.host.draft({ region: { kind: "box", points: [p, p] } });
    } else if (tool === "brush") {
      this.points = [p];
      this.dragging = true;
      this.host.draft({ region: this.brush() });
    } else if (tool === "polygon") {
      this.addVertex(p);
    }
  }

  move(p) {
    const tool = this.host.tool();
    if (tool === "box" && this.start) {
      this.host.draft({ region: { kind: "box", points: [this.start, p] } });
    } else if (tool === "brush") {
      const last = this.points[this.points.length - 1];
      if (last[0] !== p[0] || last[1] !== p[1]) this.points.push(p);
      this.host.draft({ region: this.brush() });
    }
  }

  up(p) {
    this.dragging = false;
    const tool = this.host.tool();
    if (tool === "box" && this.start) {
      const region = { kind: "box", points: [this.start, p] };
      this.start = null;
      this.host.commit(region, p);
    } else if (tool === "brush" && this.points.length) {
      const region = this.brush();
      this.points = [];
      this.host.commit(region, p);
    }
  }

  /** The stroke so far as a brush region: thinned to at most MAX_POINTS points (what the server takes). */
  brush() {
    const radius = this.host.radius();
    return { kind: "brush", points: thinStroke(this.points, radius), radius };
  }

  addVertex(p) {
    const last = this.points[this.points.length - 1];
    if (last && last[0] === p[0] && last[1] === p[1]) return;
    if (this.points.length >= MAX_POINTS) {
      this.host.notice(`A polygon has at most ${MAX_POINTS} vertices: close this one (double-click or Enter) ` +
        "or press Escape and draw it with fewer.");
      return;
    }
    this.points.push(p);
    this.host.draft({ polyline: this.points.slice() });
  }

  closePolygon() {
    if (this.points.length < 3) return false;
    const region = { kind: "polygon", points: this.points.slice() };
    this.points = [];
    this.host.commit(region, region.points[0]);
    return true;
  }

  moveCursor(dy, dx) {
    const size = this.host.size();
    if (!size) return;
    const [y, x] = this.cursorAt ?? [Math.floor(size.h / 2), Math.floor(size.w / 2)];
    this.cursorAt = [Math.min(size.h - 1, Math.max(0, y + dy)), Math.min(size.w - 1, Math.max(0, x + dx))];
    this.host.cursor(this.cursorAt);
    this.host.pointer(this.cursorAt);
    const tool = this.host.tool();
    if (tool === "box" && this.start) this.host.draft({ region: { kind: "box", points: [this.start, this.cursorAt] } });
  }

  /** Enter at the keyboard cursor: what a click (or the end of a drag) does with the tool. */
  enterAt(p) {
    const tool = this.host.tool();
    if (tool === "box") {
      if (this.start) this.up(p);
      else {
        this.start = p;
        this.dragging = false;
        this.host.draft({ region: { kind: "box", points: [p, p] } });
      }
    } else if (tool === "polygon") {
      if (!this.closePolygon()) this.addVertex(p);
    } else if (tool === "brush") {
      if (!this.points.length) this.points = [p];
      this.up(p);
    } else {
      this.down(p);
    }
  }

  onCanvasKey(event) {
    const steps = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (event.key in steps) {
      event.preventDefault();
      const n = event.shiftKey ? 5 : 1;
      this.moveCursor(steps[event.key][0] * n, steps[event.key][1] * n);
      return;
    }
    if (!this.cursorAt && (event.key === "Enter" || event.key === " ")) this.moveCursor(0, 0);
    if (event.key === "Enter") {
      event.preventDefault();
      event.stopPropagation();
      this.enterAt(this.cursorAt);
    } else if (event.key === " ") {
      event.preventDefault();
      const tool = this.host.tool();
      if (tool === "polygon") this.addVertex(this.cursorAt);
      else if (tool === "brush") {
        this.points.push(this.cursorAt);
        this.host.draft({ region: this.brush() });
      } else this.enterAt(this.cursorAt);
    }
  }

  /** Enter closes a polygon and Escape drops a draft wherever the focus is (outside form fields). */
  onDocumentKey(event) {
    const field = event.target.closest?.("input, select, textarea, button, a");
    if (field || event.defaultPrevented) return;
    if (event.key === "Escape") this.reset();
    else if (event.key === "Enter" && this.host.tool() === "polygon") this.closePolygon();
  }
}
