// Who is signed in, and what their role lets the console show (the API enforces the same rules).
export const session = { user: null };

const ANALYST = new Set(["admin", "analyst"]);

export const can = {
  editCatalog: () => ANALYST.has(session.user?.role),
  rawSql: () => ANALYST.has(session.user?.role),
  editDashboards: () => ANALYST.has(session.user?.role),
  dataSources: () => session.user?.role === "admin",
  users: () => session.user?.role === "admin",
  systemEmail: () => session.user?.role === "admin",
};

export function isMine(object) {
  return Boolean(object && session.user && object.owner_id === session.user.id);
}

export function canWrite(object) {
  return session.user?.role === "admin" || isMine(object);
}

// Sign-in and sign-out go through here, so the navigation redraws for the new role.
export function setUser(user) {
  session.user = user;
  document.dispatchEvent(new CustomEvent("biapp:session"));
}
