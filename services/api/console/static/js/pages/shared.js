// Helpers the resource pages share: owner names, page headings, confirmations, pickers.
import { all, del } from "../api.js";
import { announce, button, h } from "../dom.js";
import { navigate } from "../router.js";
import { can, session } from "../session.js";

let ownerCache = null;

// id → email for the owner column: only admins may list users; everyone else only sees their own objects.
export async function ownerNames() {
  if (!can.users()) return {};
  if (!ownerCache) {
    ownerCache = all("/api/users").then(
      (users) => Object.fromEntries(users.map((user) => [user.id, user.email])),
      () => ({}),
    );
  }
  return ownerCache;
}

export function forgetOwners() {
  ownerCache = null;
}

export function ownerText(object, names) {
  if (object.owner_id && object.owner_id === session.user?.id) return "You";
  return names[object.owner_id] || (object.shared ? "Shared with you" : "Another user");
}

export function pageHead(title, ...actions) {
  return h("div", { class: "page-head" }, h("h1", {}, title), actions.length ? h("div", { class: "actions" }, actions) : null);
}

export function buttonLink(label, href, kind = "primary") {
  return h("a", { class: `button ${kind}`, href }, label);
}

export function confirmed(question) {
  return window.confirm(question);
}

// "Delete" after a confirmation; then back to the list, or the API's reason announced.
export function deleteButton(question, url, listPath) {
  return button("Delete", async () => {
    if (!confirmed(question)) return;
    try {
      await del(url);
      navigate(listPath);
    } catch (error) {
      announce(error.message, "bad");
    }
  }, { kind: "danger" });
}

export const LOCALES = ["en-US", "en-GB", "de-DE", "de-AT", "de-CH", "fr-FR", "fr-CA", "es-ES", "es-MX", "it-IT", "nl-NL", "pt-BR", "ja-JP"];

export function localeOptions(current) {
  let names = null;
  try {
    names = new Intl.DisplayNames(["en"], { type: "language" });
  } catch {
    names = null;
  }
  const list = LOCALES.includes(current) || !current ? LOCALES : [current, ...LOCALES];
  return list.map((code) => [code, names ? `${names.of(code)} — ${code}` : code]);
}

export function summary(pairs) {
  return h(
    "dl",
    { class: "summary" },
    pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}
