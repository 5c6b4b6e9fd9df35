// Users (admins): who may sign in, with which role.
import { del, get, patch, post } from "../api.js";
import { announce, busy, button, checkbox, clearErrors, field, formError, h, input, replace, select, showErrors, table } from "../dom.js";
import { pageArgs, pager } from "../components.js";
import { badge, time } from "../format.js";
import { navigate } from "../router.js";
import { session } from "../session.js";
import { buttonLink, confirmed, forgetOwners, pageHead } from "./shared.js";

const ROLES = [["viewer", "Viewer: reports and alerts on what is shared with them"], ["analyst", "Analyst: catalog, queries incl. SQL, dashboards"], ["admin", "Admin: everything, users and data sources"]];

export async function usersPage(main, params, query) {
  const page = await get("/api/users", pageArgs(query));
  const columns = [
    { label: "Email", render: (u) => h("a", { href: `#/users/${u.id}` }, u.email) },
    { label: "Name", render: (u) => u.name || "—" },
    { label: "Role", render: (u) => u.role },
    { label: "State", render: (u) => (u.is_active ? badge("success", "Active") : badge("failed", "Deactivated")) },
    { label: "Since", render: (u) => time(u.created_at) },
  ];
  replace(main, pageHead("Users", buttonLink("New user", "#/users/new")), table("Users", columns, page.items), pager(page, "User pages"));
}

export async function userEditor(main, { id }) {
  const user = id ? await get(`/api/users/${id}`) : null;
  const u = user || { role: "viewer", is_active: true };
  const self = user && user.id === session.user.id;
  const email = input({ type: "email", value: u.email || "", autocomplete: "off", disabled: Boolean(user) });
  const name = input({ value: u.name || "", autocomplete: "off" });
  const role = select(ROLES, { value: u.role, disabled: self });
  const active = checkbox("Active (may sign in)", { checked: u.is_active, disabled: self });
  const password = input({ type: "password", autocomplete: "new-password" });
  const submit = h("button", { type: "submit", class: "button primary" }, user ? "Save user" : "Create user");
  const form = h(
    "form",
    { novalidate: true },
    formError(),
    field("Email", email, { name: "email" }),
    field("Name", name, { name: "name" }),
    field("Role", role, { name: "role", hint: self ? "You cannot change your own role." : null }),
    user ? active : null,
    field(user ? "New password" : "Password", password, { name: "password", hint: user ? "Leave empty to keep it. Setting one signs the user out everywhere." : "Give it to the user through a safe channel." }),
    h(
      "div",
      { class: "form-actions" },
      submit,
      user && !self
        ? button("Delete user", async () => {
            if (!confirmed(`Delete ${user.email}? Their reports and queries go with them.`)) return;
            try {
              await del(`/api/users/${id}`);
              forgetOwners();
              navigate("/users");
            } catch (error) {
              announce(error.message, "bad");
            }
          }, { kind: "danger" })
        : null,
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    await busy(submit, async () => {
      try {
        if (user) {
          const changes = { name: name.value.trim() || null };
          if (!self) Object.assign(changes, { role: role.value, is_active: active.querySelector("input").checked });
          if (password.value) changes.password = password.value;
          await patch(`/api/users/${id}`, changes);
          announce("User saved.", "good");
          navigate("/users");
        } else {
          await post("/api/users", { email: email.value.trim(), name: name.value.trim() || null, role: role.value, password: password.value });
          forgetOwners();
          announce("User created.", "good");
          navigate("/users");
        }
      } catch (error) {
        showErrors(form, error);
      }
    });
  });
  replace(main, h("p", {}, h("a", { href: "#/users" }, "← All users")), h("h1", {}, user ? user.email : "New user"), form);
}
