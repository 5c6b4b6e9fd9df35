// Sign in (a cookie session, POST /api/auth/session), and your own account: password and sign out.
import { post } from "../api.js";
import { announce, busy, button, clearErrors, field, formError, h, input, replace, showErrors } from "../dom.js";
import { currentPath, navigate } from "../router.js";
import { session, setUser } from "../session.js";

export async function signInPage(main) {
  const { query } = currentPath();
  const next = query.get("next") && query.get("next").startsWith("/") && !query.get("next").startsWith("/signin") ? query.get("next") : "/reports";
  if (session.user) {
    navigate(next);
    return;
  }
  const email = input({ type: "email", autocomplete: "username", required: true, name: "email" });
  const password = input({ type: "password", autocomplete: "current-password", required: true, name: "password" });
  const submit = h("button", { type: "submit", class: "button primary" }, "Sign in");
  const form = h(
    "form",
    { class: "card", novalidate: true },
    formError(),
    field("Email", email, { name: "email" }),
    field("Password", password, { name: "password" }),
    h("div", { class: "form-actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    await busy(submit, async () => {
      try {
        const user = await post("/api/auth/session", { email: email.value.trim(), password: password.value });
        setUser(user);
        navigate(next);
      } catch (error) {
        if (error.status === 401) error.fields = {};
        showErrors(form, error);
        if (error.status === 401) password.focus();
      }
    });
  });
  replace(
    main,
    h(
      "div",
      { class: "signin" },
      h("h1", {}, "Sign in to BIApp Reports"),
      h("p", { class: "muted" }, "Schedule reports, watch them run and download what was sent."),
      form,
    ),
  );
}

export async function accountPage(main) {
  const user = session.user;
  const current = input({ type: "password", autocomplete: "current-password", required: true });
  const fresh = input({ type: "password", autocomplete: "new-password", required: true });
  const again = input({ type: "password", autocomplete: "new-password", required: true });
  const submit = h("button", { type: "submit", class: "button primary" }, "Change password");
  const form = h(
    "form",
    { novalidate: true },
    formError(),
    field("Current password", current, { name: "current_password" }),
    field("New password", fresh, { name: "new_password", hint: "Changing it signs you out everywhere else." }),
    field("New password again", again, { name: "confirm" }),
    h("div", { class: "form-actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    if (fresh.value !== again.value) {
      showErrors(form, { message: "The passwords differ.", fields: { confirm: ["Type the same new password twice."] } });
      return;
    }
    await busy(submit, async () => {
      try {
        await post("/api/auth/password", { current_password: current.value, new_password: fresh.value });
        form.reset();
        announce("Password changed. Other sessions were signed out; this one goes on.", "good");
      } catch (error) {
        showErrors(form, error);
      }
    });
  });
  replace(
    main,
    h("h1", {}, "Your account"),
    h(
      "dl",
      { class: "summary" },
      h("dt", {}, "Email"),
      h("dd", {}, user.email),
      h("dt", {}, "Name"),
      h("dd", {}, user.name || "—"),
      h("dt", {}, "Role"),
      h("dd", {}, user.role),
    ),
    h("section", { class: "card", "aria-labelledby": "password-heading" }, h("h2", { id: "password-heading" }, "Change your password"), form),
    h("p", {}, button("Sign out", () => document.querySelector("#account button")?.click(), { kind: "secondary" })),
  );
}
