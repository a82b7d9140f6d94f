// Controls built from what the server describes: a method's options form from each option's JSON
// schema (a method registered later needs no work here), the layer tree from dotted module names,
// the model and class selects and the legend of the predicted segmentation.

const NONE_WORDS = new Set(["", "none", "auto", "full", "null"]);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

/** An option's schema: under "schema", or flattened into the option itself. */
function schemaOf(option) {
  return option.schema ?? option;
}

function shownValue(value, schema) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return schema.type === "window" ? value.join("x") : JSON.stringify(value);
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function inputFor(option, id, value) {
  const schema = schemaOf(option);
  if (Array.isArray(schema.enum)) {
    const select = el("select", { id, name: option.name });
    schema.enum.forEach((choice, i) => select.append(el("option", { value: String(i), selected: choice === value }, String(choice))));
    return select;
  }
  if (schema.type === "boolean") return el("input", { id, name: option.name, type: "checkbox", checked: Boolean(value) });
  if (schema.type === "integer" || schema.type === "number") {
    const input = el("input", { id, name: option.name, type: "number", value: shownValue(value, schema),
      step: schema.type === "integer" ? "1" : "any", inputMode: schema.type === "integer" ? "numeric" : "decimal" });
    if (schema.minimum !== null && schema.minimum !== undefined) input.min = String(schema.minimum);
    if (schema.maximum !== null && schema.maximum !== undefined && Math.abs(schema.maximum) < 1e15) input.max = String(schema.maximum);
    if (schema.nullable) input.placeholder = "none";
    return input;
  }
  const input = el("input", { id, name: option.name, type: "text", value: shownValue(value, schema), spellcheck: false });
  if (schema.type === "window") input.placeholder = "N, HxW or full";
  else if (schema.nullable) input.placeholder = "none";
  return input;
}

/** Parse a text field: a window ("2", "2x3", "full"), JSON, or else the text itself. */
function parseText(text, schema) {
  const trimmed = text.trim();
  if (schema.nullable && NONE_WORDS.has(trimmed.toLowerCase())) return null;
  if (schema.type === "window" && /^\d+([x,×]\d+)*$/i.test(trimmed)) {
    const sizes = trimmed.split(/[x,×]/i).map(Number);
    return sizes.length === 1 ? sizes[0] : sizes;
  }
  try {
    return JSON.parse(trimmed);
  } catch {
    return text;
  }
}

function readInput(input, option) {
  const schema = schemaOf(option);
  if (Array.isArray(schema.enum)) return schema.enum[Number(input.value)];
  if (schema.type === "boolean") return input.checked;
  if (schema.type === "integer" || schema.type === "number") {
    if (input.value.trim() === "") return schema.nullable ? null : "";
    return Number(input.value);
  }
  return parseText(input.value, schema);
}

/** What an option takes, in words, from its schema (when the server gives no description). */
function describeSchema(schema) {
  if (Array.isArray(schema.enum)) return `one of ${schema.enum.join(", ")}`;
  const none = schema.nullable ? "; empty for none" : "";
  if (schema.type === "window") return `N, HxW or full${none}`;
  if (schema.type === "integer" || schema.type === "number") {
    const low = schema.minimum ?? null;
    const high = schema.maximum !== null && schema.maximum !== undefined && Math.abs(schema.maximum) < 1e15 ? schema.maximum : null;
    const word = schema.type === "integer" ? "integer" : "number";
    if (low !== null && high !== null) {
      return `${word} in ${schema.exclusiveMinimum ? "(" : "["}${low}, ${high}${schema.exclusiveMaximum ? ")" : "]"}${none}`;
    }
    if (low !== null) return `${word} ${schema.exclusiveMinimum ? ">" : "≥"} ${low}${none}`;
    return `${word}${none}`;
  }
  return schema.type === "boolean" ? "" : `text${none}`;
}

/** Build the options form of `method` into `container` with `values`; onChange(values) on every change. */
export function buildOptionsForm(container, method, values, onChange) {
  container.replaceChildren();
  if (!method.options.length) {
    container.append(el("p", { class: "hint" }, `${method.name} has no options.`));
    return;
  }
  for (const option of method.options) {
    const id = `opt-${option.name}`;
    const value = option.name in values ? values[option.name] : option.default;
    const input = inputFor(option, id, value);
    input.dataset.testid = id;
    const words = option.describe ?? describeSchema(schemaOf(option));
    const describe = words ? ` (${words})` : "";
    const help = el("small", { id: `${id}-help`, class: "hint" }, `${option.help ?? ""}${describe}`);
    input.setAttribute("aria-describedby", help.id);
    input.addEventListener("change", () => onChange(readOptions(container, method)));
    const row = el("div", { class: input.type === "checkbox" ? "option check" : "option" },
      el("label", { for: id }, option.name), input, help);
    container.append(row);
  }
}

/** The option values now in the form (every option of the method). */
function readOptions(container, method) {
  const values = {};
  for (const option of method.options) {
    const input = container.querySelector(`#opt-${CSS.escape(option.name)}`);
    values[option.name] = input ? readInput(input, option) : option.default;
  }
  return values;
}

function layerText(segment, layer, isDefault) {
  const shape = layer.shape ? ` ${layer.shape.slice(1).join("×")}` : "";
  const readable = layer.readable && layer.readable !== segment ? ` — ${layer.readable}` : "";
  return `${segment}${readable} · ${layer.type ?? ""}${shape}${isDefault ? " ★ default" : ""}`;
}

/** The layers as a tree of dotted names; siblings keep the order in which they first appear. */
function layerTree(layers) {
  const root = { children: new Map() };
  for (const layer of layers) {
    const parts = layer.name.split(".");
    let node = root;
    parts.forEach((segment, depth) => {
      if (!node.children.has(segment)) {
        node.children.set(segment, { segment, name: parts.slice(0, depth + 1).join("."), children: new Map(), layer: null });
      }
      node = node.children.get(segment);
    });
    node.layer = layer;
  }
  return root;
}

function* depthFirst(node, depth = 0) {
  for (const child of node.children.values()) {
    yield [child, depth];
    yield* depthFirst(child, depth + 1);
  }
}

/**
 * Fill the layer select as an indented tree: names split on "." give the nesting; a parent that
 * cannot be explained itself (e.g. a ModuleList) appears as a disabled heading.
 */
export function fillLayerSelect(select, layers, defaultName, chosen) {
  select.replaceChildren();
  for (const [node, depth] of depthFirst(layerTree(layers))) {
    const indent = "\u00a0\u00a0\u00a0".repeat(depth);
    select.append(node.layer
      ? el("option", { value: node.name, title: node.name }, indent + layerText(node.segment, node.layer, node.name === defaultName))
      : el("option", { value: "", disabled: true, title: node.name }, `${indent}${node.segment} ▾`));
  }
  select.value = layers.some((layer) => layer.name === chosen) ? chosen : defaultName;
}

/** A model as the model select shows it (its class names may be unknown: null). */
function modelText(m) {
  const classes = m.class_names ? `${m.class_names.length} classes` : "unnamed classes";
  return `${m.name} (${m.family ? `${m.family}, ` : ""}${m.dims}-D, ${classes})`;
}

/** Fill the model select from /api/info's models (disabled when there is no choice). */
export function fillModelSelect(select, models, chosen) {
  select.replaceChildren(...models.map((m) => el("option", { value: m.name }, modelText(m))));
  select.value = chosen;
  select.disabled = models.length < 2;
}

/** Fill the class select from the prediction's classes (with their pixel counts). */
export function fillClassSelect(select, classes, chosen) {
  select.replaceChildren(...classes.map((c) => el("option", { value: String(c.index) }, `${c.index}: ${c.name} (${c.pixels} px)`)));
  select.value = String(chosen);
}

/** The legend of the predicted segmentation: colour, class name and pixel count; clicking picks the class. */
export function fillLegend(list, classes, onPick) {
  list.replaceChildren(...classes.map((c) => {
    const button = el("button", { type: "button", class: "legend-item", dataset: { cls: String(c.index) },
      title: `explain class ${c.name}` },
    el("span", { class: "swatch", style: `background:${c.color}` }), `${c.name}`, el("span", { class: "count" }, `${c.pixels} px`));
    button.addEventListener("click", () => onPick(c.index));
    return el("li", {}, button);
  }));
}

export { el };
