// Email settings: your own SMTP account (or, for admins, the system default), presets, test and send test.
import { del, get, post, put } from "../api.js";
import { announce, busy, button, clearErrors, field, formError, h, input, radio, replace, select, showErrors } from "../dom.js";
import { time } from "../format.js";
import { currentPath, navigate, setQuery } from "../router.js";
import { can, session } from "../session.js";
import { confirmed, pageHead } from "./shared.js";

function testResult(result) {
  return h(
    "div",
    { class: `result ${result.ok ? "good" : "bad"}`, role: "status" },
    h("strong", {}, result.ok ? "It works." : "It did not work."),
    h("p", {}, result.message),
    result.steps?.length ? h("ul", {}, result.steps.map((step) => h("li", {}, step))) : null,
    result.sent_to ? h("p", {}, `A test message went to ${result.sent_to}.`) : null,
  );
}

export async function emailPage(main) {
  const { query } = currentPath();
  const scope = can.systemEmail() && query.get("scope") === "system" ? "system" : "user";
  let config = null;
  try {
    config = await get("/api/email-config", { scope });
  } catch (error) {
    if (error.status !== 404) throw error;
  }
  // The API answers with the configuration in effect (`source`: own, system_default or none).
  const own = config && config.source !== "none" && (config.scope || scope) === scope ? config : null;
  const presets = await get("/api/email-config/presets").catch(() => []);
  const c = own || { port: 587, security: "starttls" };

  const preset = select([["", "Choose a provider…"], ...presets.map((p) => [p.key, `${p.name}${p.allowed === false ? " (not allowed here)" : ""}`])]);
  const presetNotes = h("div", { class: "hint", role: "status" });
  const host = input({ value: c.host || "", autocomplete: "off" });
  const port = input({ type: "number", min: 1, max: 65535, value: c.port ?? "", inputmode: "numeric" });
  const security = select([["starttls", "STARTTLS (usually port 587)"], ["ssl", "TLS from the start (usually port 465)"], ["none", "None (local relays only)"]], { value: c.security });
  const username = input({ value: c.username || "", autocomplete: "off" });
  const password = input({ type: "password", autocomplete: "new-password", placeholder: c.has_password ? "unchanged" : "" });
  const fromAddress = input({ type: "email", value: c.from_address || "", autocomplete: "off" });
  const fromName = input({ value: c.from_name || "", autocomplete: "off" });
  const replyTo = input({ type: "email", value: c.reply_to || "", autocomplete: "off" });
  preset.addEventListener("change", () => {
    const chosen = presets.find((p) => p.key === preset.value);
    if (!chosen) return;
    if (chosen.host) host.value = chosen.host;
    if (chosen.port) port.value = chosen.port;
    if (chosen.security) security.value = chosen.security;
    replace(presetNotes, chosen.username_hint ? h("p", {}, `User name: ${chosen.username_hint}`) : null, chosen.notes ? h("p", {}, chosen.notes) : null);
  });
  const body = () => ({
    host: host.value.trim(),
    port: port.value ? Number(port.value) : null,
    security: security.value,
    username: username.value.trim() || null,
    ...(password.value ? { password: password.value } : {}),
    from_address: fromAddress.value.trim(),
    from_name: fromName.value.trim() || null,
    reply_to: replyTo.value.trim() || null,
  });
  const resultBox = h("div", {});
  const form = h(
    "form",
    { novalidate: true },
    formError(),
    presets.length ? field("Start from a preset", preset, { hint: "Fills in the server, port and security." }) : null,
    presetNotes,
    h(
      "fieldset",
      {},
      h("legend", {}, "Server"),
      h("div", { class: "two-columns" }, field("Host", host, { name: "host" }), field("Port", port, { name: "port" })),
      field("Security", security, { name: "security" }),
      h("div", { class: "two-columns" }, field("User name", username, { name: "username" }),
        field("Password", password, { name: "password", hint: c.has_password ? "Leave empty to keep the stored one (it is kept only while host, port and user stay the same)." : "Stored encrypted; never shown again." })),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Sender"),
      field("From address", fromAddress, { name: "from_address" }),
      field("From name", fromName, { name: "from_name" }),
      field("Reply-To", replyTo, { name: "reply_to" }),
    ),
  );
  const save = h("button", { type: "submit", class: "button primary" }, "Save settings");
  const test = (send) => async (event) => {
    clearErrors(form);
    await busy(event.currentTarget, async () => {
      replace(resultBox, h("p", { class: "muted", role: "status" }, "Connecting…"));
      try {
        const settings = host.value.trim() ? body() : {};
        const result = await post("/api/email-config/test", { ...settings, send_test_message: send }, { scope });
        replace(resultBox, testResult(result));
      } catch (error) {
        replace(resultBox);
        showErrors(form, error);
      }
    });
  };
  form.append(
    h(
      "div",
      { class: "form-actions" },
      save,
      button("Test connection", test(false)),
      button(`Send a test email to ${session.user.email}`, test(true)),
      own
        ? button("Remove these settings", async () => {
            if (!confirmed("Remove these email settings?")) return;
            try {
              await del("/api/email-config", { scope });
              announce("Email settings removed.", "good");
              navigate(`/email${scope === "system" ? "?scope=system" : ""}`);
            } catch (error) {
              announce(error.message, "bad");
            }
          }, { kind: "danger" })
        : null,
    ),
    resultBox,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    await busy(save, async () => {
      try {
        await put("/api/email-config", body(), { scope });
        announce("Email settings saved.", "good");
        navigate(`/email${scope === "system" ? "?scope=system" : ""}`);
      } catch (error) {
        showErrors(form, error);
      }
    });
  });

  const scopeSwitch = can.systemEmail()
    ? h(
        "fieldset",
        { class: "group" },
        h("legend", {}, "Settings for"),
        h("div", { class: "choices" },
          radio("My reports", { name: "scope", value: "user", checked: scope === "user", onChange: () => setQuery({ scope: null }) }),
          radio("System default (everyone without settings of their own)", { name: "scope", value: "system", checked: scope === "system", onChange: () => setQuery({ scope: "system" }) })),
      )
    : null;
  let state;
  if (own) state = h("p", {}, `These settings are in use${own.updated_at ? "; last changed " : "."}`, own.updated_at ? time(own.updated_at) : null, own.updated_at ? "." : null);
  else if (config && config.source === "system_default" && scope === "user") {
    const server = config.host ? ` (${config.host}:${config.port})` : "";
    state = h("p", {}, `You have no settings of your own: your reports go out through the system default${server}, from ${config.from_address}.`);
  } else if (scope === "system") state = h("p", {}, "No system default yet: users without settings of their own cannot send.");
  else state = h("p", { class: "result warn" }, config?.note || "No email settings: until you save some (or an admin sets a system default), reports cannot be emailed.");
  replace(main, pageHead("Email settings"), scopeSwitch, state, form);
}
