"""The raw-SQL guard: exactly one read-only SELECT, or a rejection that says why.

This does not lean on driver behaviour (psycopg runs several statements in one
parameterless string even in a read-only transaction): the text is parsed with
sqlglot and must be a single SELECT (set operations and read-only CTEs allowed)
with nothing in it that writes, locks or changes session settings. The engine
still runs it in a READ ONLY transaction through a server-side cursor, and data
sources should use a SELECT-only database role; the guard is the first of three
walls, not the only one.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from shared.errors import QueryRejectedError

DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}

_WRITES = tuple(
    getattr(exp, name)
    for name in (
        "Insert",
        "Update",
        "Delete",
        "Merge",
        "Create",
        "Drop",
        "Alter",
        "TruncateTable",
        "Command",
        "Into",
        "Copy",
        "LoadData",
        "Set",
        "Transaction",
        "Commit",
        "Rollback",
        "Grant",
        "Use",
        "Pragma",
        "Analyze",
    )
    if hasattr(exp, name)
)
_SELECTS = tuple(getattr(exp, name) for name in ("Select", "Union", "Except", "Intersect") if hasattr(exp, name))

# Functions that change server state or reach outside the database, refused by name.
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "set_config",
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "pg_advisory_lock",
        "pg_advisory_xact_lock",
        "pg_notify",
        "txid_current",
        "load_file",
        "sys_exec",
        "sys_eval",
        "load_extension",
        "writefile",
        "readfile",
    }
)
MAX_SQL_CHARS = 100_000


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return str(node.sql_name() if hasattr(node, "sql_name") else node.key).lower()


def check_select(sql: str, kind: str = "postgresql") -> str:
    """Return `sql` without trailing semicolons if it is exactly one read-only SELECT; else raise."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRejectedError("The SQL is empty.")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRejectedError(f"The SQL is longer than {MAX_SQL_CHARS} characters.")
    if "\x00" in sql:
        raise QueryRejectedError("The SQL contains a NUL character.")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECTS.get(kind, "postgres")) if s is not None]
    except ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc).splitlines()[0]
        raise QueryRejectedError(f"The SQL could not be parsed: {first}") from None
    if len(statements) != 1:
        raise QueryRejectedError(f"Exactly one statement is allowed; found {len(statements)}.")
    tree = statements[0]
    while isinstance(tree, exp.Subquery | exp.Paren) and tree.this is not None:
        tree = tree.this  # "(select …)" is still one SELECT
    if not isinstance(tree, _SELECTS):
        raise QueryRejectedError(f"Only SELECT statements may run; this is a {tree.key.upper()} statement.")
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise QueryRejectedError(f"Only read-only SELECTs may run; found {node.key.upper()} inside the query.")
        if isinstance(node, exp.Lock):
            raise QueryRejectedError("Row locks (FOR UPDATE / FOR SHARE) are not allowed in report queries.")
        if isinstance(node, exp.Func) and _function_name(node) in FORBIDDEN_FUNCTIONS:
            raise QueryRejectedError(f"The function {_function_name(node)}() is not allowed in report queries.")
    return sql.strip().rstrip(";").rstrip()
