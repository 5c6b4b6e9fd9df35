// Starts the console: who is signed in, the navigation for their role, then the page in the URL.
import { ApiError, del, get } from "./api.js";
import { announce, h, replace } from "./dom.js";
import { alertEditor, alertPage, alertsPage } from "./pages/alerts.js";
import { entitiesPage, entityEditor } from "./pages/catalog.js";
import { dashboardEditor, dashboardsPage } from "./pages/dashboards.js";
import { dataSourceEditor, dataSourcesPage } from "./pages/datasources.js";
import { emailPage } from "./pages/email.js";
import { executionPage } from "./pages/executions.js";
import { queriesPage, queryEditor } from "./pages/queries.js";
import { reportEditor, reportPage, reportsPage } from "./pages/reports.js";
import { accountPage, signInPage } from "./pages/signin.js";
import { userEditor, usersPage } from "./pages/users.js";
import { currentPath, navigate, render, route } from "./router.js";
import { can, session } from "./session.js";

const signedIn = () => Boolean(session.user);

route("/signin", signInPage);
route("/account", accountPage, { allowed: signedIn });
route("/reports", reportsPage, { allowed: signedIn });
route("/reports/new", reportEditor, { allowed: signedIn });
route("/reports/:id", reportPage, { allowed: signedIn });
route("/reports/:id/edit", reportEditor, { allowed: signedIn });
route("/executions/:id", executionPage, { allowed: signedIn });
route("/queries", queriesPage, { allowed: signedIn });
route("/queries/new", queryEditor, { allowed: signedIn });
route("/queries/:id", queryEditor, { allowed: signedIn });
route("/dashboards", dashboardsPage, { allowed: signedIn });
route("/dashboards/new", dashboardEditor, { allowed: can.editDashboards });
route("/dashboards/:id", dashboardEditor, { allowed: signedIn });
route("/catalog", entitiesPage, { allowed: can.editCatalog });
route("/catalog/new", entityEditor, { allowed: can.editCatalog });
route("/catalog/:id", entityEditor, { allowed: can.editCatalog });
route("/data-sources", dataSourcesPage, { allowed: can.dataSources });
route("/data-sources/new", dataSourceEditor, { allowed: can.dataSources });
route("/data-sources/:id", dataSourceEditor, { allowed: can.dataSources });
route("/email", emailPage, { allowed: signedIn });
route("/alerts", alertsPage, { allowed: signedIn });
route("/alerts/new", alertEditor, { allowed: signedIn });
route("/alerts/:id", alertPage, { allowed: signedIn });
route("/alerts/:id/edit", alertEditor, { allowed: signedIn });
route("/users", usersPage, { allowed: can.users });
route("/users/new", userEditor, { allowed: can.users });
route("/users/:id", userEditor, { allowed: can.users });

const NAV = [
  ["/reports", "Reports", signedIn],
  ["/alerts", "Alerts", signedIn],
  ["/queries", "Saved queries", signedIn],
  ["/dashboards", "Dashboards", signedIn],
  ["/catalog", "Catalog", can.editCatalog],
  ["/data-sources", "Data sources", can.dataSources],
  ["/users", "Users", can.users],
  ["/email", "Email settings", signedIn],
];

function drawNavigation() {
  const nav = document.getElementById("nav");
  const account = document.getElementById("account");
  const toggle = document.getElementById("nav-toggle");
  if (!session.user) {
    replace(nav);
    replace(account);
    toggle.hidden = true;
    return;
  }
  toggle.hidden = false;
  replace(
    nav,
    h("ul", {}, NAV.filter(([, , allowed]) => allowed()).map(([path, label]) => h("li", {}, h("a", { href: `#${path}`, dataset: { path } }, label)))),
  );
  replace(
    account,
    h("a", { href: "#/account", class: "who", title: `Signed in as ${session.user.email} (${session.user.role})` }, session.user.email, h("span", { class: "role" }, session.user.role)),
    h("button", { type: "button", class: "button secondary small", onClick: signOut }, "Sign out"),
  );
  markCurrent();
}

function markCurrent() {
  const { path } = currentPath();
  for (const link of document.querySelectorAll("#nav a")) {
    const here = path === link.dataset.path || path.startsWith(`${link.dataset.path}/`) ||
      (link.dataset.path === "/reports" && path.startsWith("/executions/"));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function signOut() {
  try {
    await del("/api/auth/session");
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) announce(error.message, "bad");
  }
  session.user = null;
  drawNavigation();
  navigate("/signin");
  announce("You are signed out.");
}

document.addEventListener("biapp:session", drawNavigation);

async function onRoute() {
  const { path } = currentPath();
  if (!session.user && path !== "/signin") {
    const next = location.hash.startsWith("#/") ? location.hash.slice(1) : "/reports";
    location.replace(`#/signin?next=${encodeURIComponent(next)}`);
    return;
  }
  document.getElementById("nav-panel").classList.remove("open");
  document.getElementById("nav-toggle").setAttribute("aria-expanded", "false");
  markCurrent();
  await render();
}

window.addEventListener("biapp:signed-out", () => {
  if (!session.user) return;
  session.user = null;
  drawNavigation();
  announce("Your session has ended; sign in again.", "warn");
  const next = location.hash.startsWith("#/") ? location.hash.slice(1) : "/reports";
  location.replace(`#/signin?next=${encodeURIComponent(next)}`);
});

async function start() {
  const toggle = document.getElementById("nav-toggle");
  toggle.addEventListener("click", () => {
    const open = document.getElementById("nav-panel").classList.toggle("open");
    toggle.setAttribute("aria-expanded", String(open));
  });
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    const main = document.getElementById("main");
    main.focus();
  });
  try {
    session.user = await get("/api/auth/me");
  } catch {
    session.user = null;
  }
  drawNavigation();
  window.addEventListener("hashchange", onRoute);
  await onRoute();
}

start();
