// The HTTP API of `segcam serve`: JSON in, JSON out; every error is a 4xx whose body is
// {"error": {"kind": ..., "message": ...}}.  Paths are relative to the page, so the tool also
// works behind a proxy that mounts it under a prefix.

class ApiError extends Error {
  constructor(message, status = 0, kind = "Error") {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.kind = kind;
  }
}

/** True for a request that the page itself abandoned (a newer one replaced it). */
export function isAbort(err) {
  return err?.name === "AbortError";
}

function errorMessage(data, text, response) {
  if (data?.error?.message) return data.error.message;
  if (Array.isArray(data?.detail)) {  // FastAPI's own validation format, should the server let one through
    return data.detail.map((d) => `${(d.loc ?? []).join(".")}: ${d.msg}`).join("; ");
  }
  if (typeof data?.detail === "string") return data.detail;
  const body = text.trim().slice(0, 200);
  return `the server answered ${response.status} ${response.statusText}${body ? `: ${body}` : ""}`;
}

async function send(method, path, body, signal) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  try {
    return await fetch(path, init);
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(
      `cannot reach the segcam server (${err.message}); check that \`segcam serve\` is still running, then reload the page.`,
      0, "NetworkError");
  }
}

/** Call the API; resolves to the parsed JSON body, rejects with an ApiError carrying the server's message. */
export async function api(method, path, body, { signal } = {}) {
  const response = await send(method, path, body, signal);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(errorMessage(data, text, response), response.status, data?.error?.kind ?? "HTTPError");
  }
  if (data === null) {
    throw new ApiError(`the server sent no JSON for ${method} ${path}; reload the page, and report it if it persists.`,
      response.status, "ProtocolError");
  }
  return data;
}

/** Fetch an image (a URL of the API or a data: URL) and decode it for drawing on canvases. */
export async function loadBitmap(url, { signal } = {}) {
  const response = await send("GET", url, undefined, signal);
  if (!response.ok) {
    const text = await response.text();
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
    throw new ApiError(errorMessage(data, text, response), response.status, data?.error?.kind ?? "HTTPError");
  }
  const blob = await response.blob();
  try {
    return await createImageBitmap(blob);
  } catch {
    throw new ApiError(`the picture at ${url.slice(0, 60)} could not be decoded; reload the page.`, 0, "ImageError");
  }
}

/** Bytes of a base64 string (with or without a data: prefix). */
export function decodeBase64(text) {
  const comma = text.startsWith("data:") ? text.indexOf(",") + 1 : 0;
  const binary = atob(text.slice(comma));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
