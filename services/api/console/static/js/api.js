// The console's only way to the server: the public REST API under /api, with the session cookie.
// The token itself is in an HttpOnly cookie the page cannot read; the CSRF value is in a readable one
// and goes back as X-CSRF-TOKEN on every change (docs/security.md).

const CSRF_COOKIE = "biapp_csrf";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The server answered ${status}.`);
    this.status = status;
    this.code = body && body.code;
    this.fields = flattenErrors((body && body.errors) || {});
  }
}

// The API's 422 `errors` are keyed by field, nested for nested fields ({"schedule": {"time": [...]}}) or
// already dotted ("filters.0.value"); both become dotted paths here.
export function flattenErrors(errors, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(errors)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (Array.isArray(value) && value.every((item) => typeof item === "string")) {
      out[path] = (out[path] || []).concat(value);
    } else if (Array.isArray(value)) {
      value.forEach((item, index) => {
        if (typeof item === "string") out[path] = (out[path] || []).concat([item]);
        else if (item && typeof item === "object") flattenErrors(item, `${path}.${index}`, out);
      });
    } else if (value && typeof value === "object") {
      flattenErrors(value, path, out);
    } else {
      out[path] = (out[path] || []).concat([String(value)]);
    }
  }
  return out;
}

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join("="));
  }
  return null;
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    params.set(key, Array.isArray(value) ? value.join(",") : String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export async function request(method, path, body, query) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") {
    const token = csrfToken();
    if (token) headers["X-CSRF-TOKEN"] = token;
  }
  let response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { code: "network", message: "The server could not be reached. Check the connection and try again." });
  }
  if (response.status === 204) return null;
  const isJson = (response.headers.get("Content-Type") || "").includes("json");
  const data = isJson ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && !path.startsWith("/api/auth/session")) {
      window.dispatchEvent(new CustomEvent("biapp:signed-out", { detail: error }));
    }
    throw error;
  }
  return data;
}

export const get = (path, query) => request("GET", path, undefined, query);
export const post = (path, body, query) => request("POST", path, body, query);
export const put = (path, body, query) => request("PUT", path, body, query);
export const patch = (path, body) => request("PATCH", path, body);
export const del = (path, query) => request("DELETE", path, undefined, query);

// Every item of a paginated list (for pickers: queries, dashboards, users), 500 at a time.
export async function all(path, query = {}) {
  const items = [];
  for (let offset = 0; ; offset += 500) {
    const page = await get(path, { ...query, limit: 500, offset });
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0) return items;
  }
}

// PATCH with only the changed fields; a server without PATCH on this resource gets the whole object by PUT.
export async function patchOrPut(path, changes, wholeBody) {
  try {
    return await patch(path, changes);
  } catch (error) {
    if (error.status !== 405) throw error;
    return put(path, { ...wholeBody(), ...changes });
  }
}
