"""What a data source may be: never the application's own database, never a privileged login.

A BI tool runs other people's SQL by design, so the login a source connects with is the
last wall. These checks run when a source is saved, when it is tested and every time a
connection to it is taken from its pool (a `checkout` event: a few catalog lookups), so a
source that was harmless when saved and was later granted SUPERUSER stops at its next run:

* `check_not_app_database` refuses a PostgreSQL source on the application's host, port and
  database however the host is spelled (it compares resolved addresses), and a SQLite file
  that is the application's file (same inode: links count).
* `check_login` refuses a PostgreSQL login that is superuser, may replicate or bypass
  row-level security, or is a member of pg_read_server_files / pg_write_server_files /
  pg_execute_server_program; a MySQL/MariaDB login holding FILE or SUPER. A login that can
  write is allowed, with a warning (`write_warning`).
* `looks_like_app_database` recognises the application's tables from inside a connection,
  for a database reached under a name no resolver can tell apart (a proxy, an alias).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

from sqlalchemy.engine import make_url

from shared.config import Settings
from shared.errors import DataSourceRefusedError

READ_ONLY_HELP = "Use a read-only login: docs/security.md shows the SQL to create one."
PG_DANGEROUS_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
APP_TABLES = ("report_executions", "scheduled_reports", "alembic_version")


APP_DATABASE = "This is the application's own database; it can never be a data source."


class PrivilegedLoginError(DataSourceRefusedError):
    """The source's login may read server files, run programs or bypass security."""

    def __init__(self, what: str):
        super().__init__("username", f"{what}. {READ_ONLY_HELP}")


def _addresses(host: str | None, port: int | None) -> set[str]:
    """Every address `host` names; loopback and this machine's own names count as one place."""
    if not host or host.startswith("/"):
        return {"local"}  # a Unix socket is this machine
    try:
        infos = socket.getaddrinfo(host, port or 5432, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return {host.lower()}
    result = set()
    for *_rest, sockaddr in infos:
        address = sockaddr[0].split("%", 1)[0]
        result.add("local" if _is_this_machine(address) else address)
    return result


def _is_this_machine(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return True
    try:
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except socket.gaierror:
        own = set()
    return address in own


def check_not_app_database(settings: Settings, kind: str, *, host=None, port=None, database=None, path=None):
    """DataSourceRefusedError when these connection fields reach the application's own database."""
    app = make_url(settings.database_url)
    if app.get_backend_name() == "sqlite":
        if kind == "sqlite" and path is not None and app.database not in (None, "", ":memory:"):
            app_file = Path(app.database)
            try:
                same = app_file.exists() and Path(path).exists() and os.path.samefile(app_file, path)
            except OSError:  # a name too long to look up is no file at all, and so not the application's
                same = False
            if same:
                raise DataSourceRefusedError("path", APP_DATABASE)
        return
    if kind != "postgresql" or (database or "") != (app.database or ""):
        return
    if (port or 5432) != (app.port or 5432):
        return
    if _addresses(host, port) & _addresses(app.host, app.port):
        raise DataSourceRefusedError("database", APP_DATABASE)


def check_login(connection, kind: str, *, warn: bool = True) -> str | None:
    """`connection` is a DB-API connection. Raise PrivilegedLoginError for a dangerous login;
    with `warn`, return a warning when it can write (a slower catalog scan), else None."""
    if kind == "postgresql":
        return _check_postgres(connection, warn)
    if kind == "mysql":
        return _check_mysql(connection, warn)
    return None


_PG_LOGIN = (
    "SELECT r.rolsuper, r.rolreplication, r.rolbypassrls, "
    + ", ".join(f"pg_has_role(current_user, '{role}', 'MEMBER')" for role in PG_DANGEROUS_ROLES)
    + " FROM pg_roles r WHERE r.rolname = current_user"
)
_PG_WRITABLE = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%%' AND has_schema_privilege(n.oid, 'USAGE') "
    "AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE') "
    "OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE')) LIMIT 1"
)


def _check_postgres(connection, warn: bool) -> str | None:
    (row,) = _rows(connection, _PG_LOGIN)
    flags = dict(zip(("superuser", "replication", "bypass row-level security"), row[:3], strict=True))
    for what, on in flags.items():
        if on:
            raise PrivilegedLoginError(f"The login has the {what} attribute and may not be a data source login")
    for role, member in zip(PG_DANGEROUS_ROLES, row[3:], strict=True):
        if member:
            raise PrivilegedLoginError(f"The login is a member of {role} and may not be a data source login")
    if not warn:
        return None
    writable = _rows(connection, _PG_WRITABLE.replace("%%", "%"))
    ((creates,),) = _rows(connection, "SELECT has_database_privilege(current_database(), 'CREATE')")
    if writable:
        return f"The login can change data (for example in table {writable[0][0]}); a read-only login is safer."
    if creates:
        return "The login can create schemas in this database; a read-only login is safer."
    return None


_MYSQL_GRANTEE = (
    "SELECT CONCAT(\"'\", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), \"'@'\", "
    "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), \"'\")"
)
_MYSQL_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "CREATE"})


def _check_mysql(connection, warn: bool) -> str | None:
    ((grantee,),) = _rows(connection, _MYSQL_GRANTEE)
    privileges = {
        r[0].upper()
        for r in _rows(
            connection, "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s", (grantee,)
        )
    }
    for dangerous in ("SUPER", "FILE"):
        if dangerous in privileges:
            raise PrivilegedLoginError(f"The login holds the {dangerous} privilege and may not be a data source login")
    if not warn:
        return None
    scoped = _rows(
        connection,
        "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = %s "
        "UNION SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = %s",
        (grantee, grantee),
    )
    if _MYSQL_WRITES & (privileges | {r[0].upper() for r in scoped}):
        return "The login can change data; a read-only login is safer."
    return None


def looks_like_app_database(connection, kind: str) -> bool:
    """True when the connected database (a DB-API connection) holds the application's own tables."""
    names = ", ".join(f"'{name}'" for name in APP_TABLES)
    if kind == "postgresql":
        sql = f"SELECT count(DISTINCT relname) FROM pg_class WHERE relkind IN ('r', 'p') AND relname IN ({names})"
    elif kind == "sqlite":
        sql = f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({names})"
    else:
        return False
    ((found,),) = _rows(connection, sql)
    return found == len(APP_TABLES)


def guard_connection(connection, kind: str, *, warn: bool = True) -> str | None:
    """Every check that needs a live DB-API connection; DataSourceRefusedError when the source must not be used."""
    if looks_like_app_database(connection, kind):
        raise DataSourceRefusedError("database", APP_DATABASE)
    return check_login(connection, kind, warn=warn)


def _rows(dbapi_connection, sql: str, params: tuple = ()) -> list[tuple]:
    cursor = dbapi_connection.cursor()
    try:
        if params:
            cursor.execute(sql, params)
        else:
            cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()
