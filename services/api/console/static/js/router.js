// Hash routes (#/reports/…): the server only ever serves one page; the API is the contract.
import { h, replace } from "./dom.js";

const routes = [];
let cleanups = [];

export function route(pattern, page, { allowed = () => true, title } = {}) {
  const names = [];
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  routes.push({ regex: new RegExp(`^${source}$`), names, page, allowed, title });
}

export function currentPath() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(1) : "/reports";
  const [path, query = ""] = hash.split("?");
  return { path, query: new URLSearchParams(query) };
}

export function navigate(path) {
  if (location.hash === `#${path}`) render();
  else location.hash = path;
}

// Replaces the query of the current route (filters, page) without adding a history entry per keystroke.
export function setQuery(values) {
  const { path, query } = currentPath();
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) query.delete(key);
    else query.set(key, Array.isArray(value) ? value.join(",") : String(value));
  }
  const text = query.toString();
  location.hash = text ? `${path}?${text}` : path;
}

export function onLeave(cleanup) {
  cleanups.push(cleanup);
}

function leave() {
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
}

export function denied(main) {
  replace(
    main,
    h("h1", { tabindex: "-1" }, "Not available"),
    h("p", {}, "Your role does not give access to this page. Ask an administrator if you need it."),
  );
}

let generation = 0;

// Each page is built in a container of its own and shown only if no later navigation started meanwhile,
// so a slow page can never replace a newer one.
export async function render() {
  leave();
  const mine = ++generation;
  const shown = document.getElementById("main");
  const main = document.createElement("div");
  const show = () => {
    if (mine === generation) shown.replaceChildren(...main.childNodes);
  };
  const { path, query } = currentPath();
  const match = routes.map((r) => [r, r.regex.exec(path)]).find(([, m]) => m);
  if (!match) {
    replace(shown, h("h1", { tabindex: "-1" }, "Page not found"), h("p", {}, h("a", { href: "#/reports" }, "Go to the reports")));
    return;
  }
  const [entry, found] = match;
  const params = Object.fromEntries(entry.names.map((name, index) => [name, decodeURIComponent(found[index + 1])]));
  document.dispatchEvent(new CustomEvent("biapp:route", { detail: { path } }));
  if (!entry.allowed()) {
    denied(main);
    show();
    focusHeading(shown);
    return;
  }
  replace(shown, h("p", { class: "loading", role: "status" }, "Loading…"));
  try {
    await entry.page(main, params, query);
  } catch (error) {
    replace(
      main,
      h("h1", { tabindex: "-1" }, error.status === 404 ? "Not found" : "Something went wrong"),
      h("p", { class: "form-error" }, error.message || String(error)),
      h("p", {}, h("a", { href: "#/reports" }, "Back to the reports")),
    );
    if (error.status !== 404 && error.status !== 403) console.error(error);
  }
  if (mine !== generation) return;
  // Pages keep references to their elements (live updates): move them into the shown container.
  show();
  const heading = shown.querySelector("h1");
  document.title = heading ? `${heading.textContent} · BIApp Reports` : "BIApp Reports";
  focusHeading(shown);
}

function focusHeading(main) {
  const heading = main.querySelector("h1");
  if (heading && document.activeElement?.closest?.("#main") === null) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
}

// Calls `tick` every `ms` while `element` is on the page and `tick` returns true.
export function poll(tick, ms, element) {
  let timer = null;
  let stopped = false;
  const loop = async () => {
    if (stopped || !element.isConnected) return;
    let again = false;
    try {
      again = await tick();
    } catch {
      again = true;
    }
    if (again && !stopped) timer = setTimeout(loop, ms);
  };
  timer = setTimeout(loop, ms);
  onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
}
