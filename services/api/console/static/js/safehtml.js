// A report body's HTML as the API's message preview returns it, rebuilt as new DOM nodes. The server has
// already cleaned it with nh3 (services/mailer/compose.py, _BODY_TAGS and _BODY_ATTRIBUTES); this copies
// only that same allow-list again, so a mistake on either side still cannot bring a script, a style or an
// event handler into the console. DOMParser's document runs no script and loads nothing, and nothing of it
// is inserted: each allowed element is created afresh, text goes in as text.
// Not an <iframe sandbox srcdoc>: without allow-same-origin the page cannot size one to its content, and
// the console's stylesheet would not reach inside it.

const TAGS = new Set([
  "p", "br", "hr", "div", "span", "blockquote", "pre", "code",
  "strong", "b", "em", "i", "u", "s", "small", "sub", "sup", "mark",
  "h1", "h2", "h3", "h4", "h5", "h6",
  "ul", "ol", "li",
  "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
  "a",
]);
// Left out with their content; any other element not allowed is unwrapped (its text stays), as nh3 does.
const DROPPED = new Set(["script", "style", "title", "textarea", "select", "option", "iframe", "noscript", "object", "template", "svg", "math"]);
const ATTRIBUTES = { a: ["href", "title"], th: ["colspan", "rowspan", "scope"], td: ["colspan", "rowspan"], ol: ["start"] };
const SCHEMES = new Set(["http:", "https:", "mailto:"]);

function absoluteLink(value) {
  const text = value.trim();
  if (!/^(https?:\/\/|mailto:)/i.test(text)) return null; // relative links mean nothing in an email
  try {
    return SCHEMES.has(new URL(text).protocol) ? text : null;
  } catch {
    return null;
  }
}

function copyChildren(from, to) {
  for (const node of from.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) {
      to.append(document.createTextNode(node.data));
      continue;
    }
    if (node.nodeType !== Node.ELEMENT_NODE || DROPPED.has(node.localName)) continue; // comments too
    if (!TAGS.has(node.localName)) {
      copyChildren(node, to);
      continue;
    }
    const element = document.createElement(node.localName);
    for (const name of ATTRIBUTES[node.localName] || []) {
      const value = node.getAttribute(name);
      const kept = name === "href" && value !== null ? absoluteLink(value) : value;
      if (kept !== null) element.setAttribute(name, kept);
    }
    if (node.localName === "a") {
      element.setAttribute("rel", "noopener noreferrer");
      element.setAttribute("target", "_blank"); // never away from the editor and its unsaved changes
    }
    copyChildren(node, element);
    to.append(element);
  }
  return to;
}

// A DocumentFragment of the allowed part of `html`.
export function sanitisedFragment(html) {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  return copyChildren(parsed.body, document.createDocumentFragment());
}
