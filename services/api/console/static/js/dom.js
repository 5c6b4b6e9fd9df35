// Small DOM helpers: elements are built with textContent, never from HTML strings, so data cannot
// become markup; no inline style anywhere (the Content-Security-Policy forbids it).

const PROPERTIES = new Set(["value", "checked", "selected", "disabled", "hidden", "multiple", "required", "readOnly", "open"]);

export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "text") element.textContent = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2).toLowerCase(), value);
    else if (PROPERTIES.has(key)) element[key] = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false || child === "") continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let counter = 0;
export const uniqueId = (prefix = "f") => `${prefix}-${++counter}`;

function describe(control, ...ids) {
  const current = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
  control.setAttribute("aria-describedby", [...current, ...ids.filter(Boolean)].join(" "));
}

// A labelled control with a hint and a place for the API's error about `name` (a dotted field path).
export function field(label, control, { name, hint, className } = {}) {
  if (!control.id) control.id = uniqueId();
  const hintId = hint ? `${control.id}-hint` : null;
  const errorId = `${control.id}-error`;
  if (name) control.dataset.field = name;
  control.dataset.errorId = errorId;
  describe(control, hintId, errorId);
  return h(
    "div",
    { class: ["field", className] },
    h("label", { for: control.id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    h("p", { class: "field-error", id: errorId, hidden: true }),
  );
}

// A group of checkboxes or radios under one legend, with one error place for the group.
export function group(legend, controls, { name, hint, className } = {}) {
  const errorId = uniqueId("g") + "-error";
  const set = h(
    "fieldset",
    { class: ["group", className], dataset: name ? { field: name, errorId } : { errorId } },
    h("legend", {}, legend),
    hint ? h("p", { class: "hint" }, hint) : null,
    h("div", { class: "choices" }, controls),
    h("p", { class: "field-error", id: errorId, hidden: true }),
  );
  return set;
}

export function input(props = {}) {
  return h("input", { type: "text", ...props });
}

export function select(options, props = {}) {
  const element = h("select", props);
  for (const option of options) {
    const [value, label] = Array.isArray(option) ? option : [option, option];
    element.append(h("option", { value, selected: String(props.value) === String(value) }, label));
  }
  if (props.value !== undefined && props.value !== null) element.value = String(props.value);
  return element;
}

export function checkbox(label, props = {}) {
  const box = h("input", { type: "checkbox", ...props });
  return h("label", { class: "check" }, box, h("span", {}, label));
}

export function radio(label, props = {}) {
  const button = h("input", { type: "radio", ...props });
  return h("label", { class: "check" }, button, h("span", {}, label));
}

export function button(label, onClick, { kind = "secondary", type = "button", ...props } = {}) {
  return h("button", { type, class: ["button", kind], onClick, ...props }, label);
}

export function link(label, href, props = {}) {
  return h("a", { href, ...props }, label);
}

export function formError() {
  return h("div", { class: "form-error", role: "alert", hidden: true });
}

export function clearErrors(container) {
  for (const slot of container.querySelectorAll(".field-error")) {
    slot.hidden = true;
    slot.textContent = "";
  }
  for (const control of container.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  for (const box of container.querySelectorAll(".form-error")) {
    box.hidden = true;
    box.replaceChildren();
  }
}

// Sets one control's error place (see field()) to `messages`, or clears it when there are none; unlike
// showErrors it leaves the rest of the form and the focus alone (for checks made while the user types).
export function fieldMessage(control, messages = []) {
  const slot = document.getElementById(control.dataset.errorId);
  if (slot) {
    slot.textContent = messages.join(" ");
    slot.hidden = !messages.length;
  }
  if (messages.length) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
}

function focusTarget(element) {
  if (element.matches("input, select, textarea, button")) return element;
  return element.querySelector("input, select, textarea, button") || element;
}

// Shows an ApiError next to the fields it names; what names no field on this form goes on top.
// `alias` may map an API path ("destinations.2.address") to the field that shows it.
export function showErrors(container, error, alias = (key) => key) {
  clearErrors(container);
  const unplaced = [];
  let first = null;
  for (const [rawKey, messages] of Object.entries(error.fields || {})) {
    let key = alias(rawKey.replace(/\._schema$/, "").replace(/^json\./, ""));
    let target = null;
    while (key && !target) {
      target = container.querySelector(`[data-field="${CSS.escape(key)}"]`);
      if (!target) key = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "";
    }
    if (!target) {
      unplaced.push(`${rawKey}: ${messages.join(" ")}`);
      continue;
    }
    const slot = document.getElementById(target.dataset.errorId);
    if (slot) {
      slot.textContent = slot.textContent ? `${slot.textContent} ${messages.join(" ")}` : messages.join(" ");
      slot.hidden = false;
    }
    target.setAttribute("aria-invalid", "true");
    first = first || target;
  }
  const box = container.querySelector(".form-error");
  if (box) {
    const lines = unplaced.length || !first ? [error.message, ...unplaced] : ["Please correct the fields marked below."];
    box.replaceChildren(...lines.map((line) => h("p", {}, line)));
    box.hidden = false;
  }
  if (first) focusTarget(first).focus();
  else if (box) box.focus?.();
}

// Runs an action with its button disabled and marked busy; returns what the action returned.
export async function busy(control, action) {
  const wasDisabled = control.disabled;
  control.disabled = true;
  control.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    control.disabled = wasDisabled;
    control.removeAttribute("aria-busy");
  }
}

let statusTimer = null;
// A polite announcement at the bottom of the screen (also read by screen readers).
export function announce(message, kind = "info") {
  const region = document.getElementById("status");
  if (!region) return;
  region.className = `toast ${kind}`;
  region.textContent = message;
  region.hidden = false;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => {
    region.hidden = true;
    region.textContent = "";
  }, 6000);
}

export function scrollTable(label, table) {
  return h("div", { class: "table-wrap", role: "region", "aria-label": label, tabindex: "0" }, table);
}

// A table whose rows turn into labelled cards on narrow screens (td data-label).
export function table(label, columns, rows, { empty = "Nothing here yet.", className, cards = true } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const head = h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col" }, column.label))));
  const body = h(
    "tbody",
    {},
    rows.map((row) =>
      h(
        "tr",
        {},
        columns.map((column, index) => {
          const content = column.render(row);
          return index === 0 && column.header !== false
            ? h("th", { scope: "row", dataset: { label: column.label } }, content)
            : h("td", { dataset: { label: column.label }, class: column.className }, content);
        }),
      ),
    ),
  );
  return scrollTable(label, h("table", { class: [cards && "cards", className] }, h("caption", { class: "visually-hidden" }, label), head, body));
}
