"""The raw-SQL guard: exactly one read-only SELECT that calls only allowed functions.

This does not lean on driver behaviour (psycopg runs several statements in one
parameterless string even in a read-only transaction): the text is parsed with
sqlglot and must be a single SELECT (set operations and read-only CTEs allowed)
with nothing in it that writes, locks or changes session settings.

A read-only SELECT can still do harm through what it calls (`pg_read_file`,
`dblink`, `query_to_xml`, `load_file`, a user-defined function that writes) or
reads (`pg_shadow`, `mysql.user`, `pg_stat_activity`). So every function call is
checked against a per-dialect allow-list (`sql_functions`), and catalog relations
holding credentials or server state are refused. Names are checked as the
database reads them, from the token stream rather than sqlglot's normalised tree
(which renames `ifnull` to `coalesce` and may not see a call at all): quoted names
keep their case, unquoted ones are lower-cased, schema qualification counts.
Text whose reading depends on the server rather than on the SQL is refused outright:
MySQL executable comments (`/*! … */`), PostgreSQL `U&` escapes, backslash-escaped
quotes, unusual whitespace.

The engine still runs the query in a READ ONLY transaction through a server-side
cursor, and data sources should use a SELECT-only database role; the guard is the
first of three walls, not the only one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokens import Token, TokenType

from shared.errors import QueryRejectedError
from shared.query import sql_functions as lists

DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}
MAX_SQL_CHARS = 100_000

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
        "Attach",
        "Detach",
        "NextValueFor",
    )
    if hasattr(exp, name)
)
_SELECTS = tuple(getattr(exp, name) for name in ("Select", "Union", "Except", "Intersect") if hasattr(exp, name))

# Reserved words: syntax, never a function name, when a "(" follows them.
_STRUCTURAL = frozenset(
    """SELECT FROM WHERE HAVING GROUP ORDER IN EXISTS AS ON USING AND OR NOT JOIN LATERAL UNION INTERSECT
    EXCEPT ROW VALUES INTERVAL CASE WHEN THEN ELSE DISTINCT LIMIT FOR WITH TO BETWEEN""".split()
)
_STRUCTURAL_BY_KIND = {
    "postgresql": frozenset({"ARRAY"}),
    "mysql": frozenset({"DIV", "XOR", "REGEXP", "RLIKE", "AGAINST", "PARTITION"}),
    "sqlite": frozenset(),
}
# Other words that are syntax only right after one of these tokens.
_COMPARED = {"=", "<>", "!=", "<", ">", "<=", ">=", "LIKE", "ILIKE", "UNION", "INTERSECT", "EXCEPT"}
_STRUCTURAL_AFTER = {
    "ANY": _COMPARED,
    "SOME": _COMPARED,
    "ALL": _COMPARED,
    "ROLLUP": {"GROUP BY", "BY", ",", "("},
    "CUBE": {"GROUP BY", "BY", ",", "("},
    "FILTER": {")"},
    "OVER": {")"},
    "BY": {"GROUP", "ORDER", "PARTITION"},
    "SETS": {"GROUPING"},
    "MATERIALIZED": {"AS", "NOT"},
    "FIRST": {"FETCH"},
    "NEXT": {"FETCH"},
    "ZONE": {"TIME"},
    "INDEX": {"USE", "FORCE", "IGNORE"},
    "KEY": {"USE", "FORCE", "IGNORE"},
    "BERNOULLI": {"TABLESAMPLE"},
    "SYSTEM": {"TABLESAMPLE"},
    "REPEATABLE": {")"},
}

_LITERALS = {
    TokenType.STRING,
    TokenType.NATIONAL_STRING,
    TokenType.BYTE_STRING,
    TokenType.BIT_STRING,
    TokenType.HEX_STRING,
    TokenType.HEREDOC_STRING,
    TokenType.UNICODE_STRING,
    TokenType.RAW_STRING,
    TokenType.NUMBER,
    TokenType.PARAMETER,
    TokenType.SESSION_PARAMETER,
    TokenType.INTRODUCER,
}
_WORD = re.compile(r"[\w$]*[^\W\d][\w$]*")
_TRAILING_WORD = re.compile(r"[^\w\s$]([\w$]*[^\W\d][\w$]*)$")
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!", re.IGNORECASE)
_ODD_BACKSLASHES_BEFORE_QUOTE = re.compile(r"(?<!\\)(?:\\\\)*\\['\"]")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

FUNCTION_REFUSED = (
    "The function {name}() is not allowed in report queries (only functions without side effects or server access are)."
)
RELATION_REFUSED = "The relation {name} is not allowed in report queries (it exposes credentials or server state)."


def check_select(sql: str, kind: str = "postgresql") -> str:
    """Return `sql` without trailing semicolons if it is one allowed read-only SELECT; else raise."""
    _check_text(sql)
    kind = kind if kind in DIALECTS else "postgresql"
    dialect = Dialect.get_or_raise(DIALECTS[kind])
    tokens = _tokenize(sql, dialect)
    _check_tokens(sql, tokens, kind)
    tree = _parse(sql, tokens, dialect)
    _check_statement(tree)
    names = _Names(sql, tokens, kind)
    _check_calls(names, _alias_positions(tree))
    _check_relations(names)
    return sql.strip().rstrip(";").rstrip()


# --- the text ------------------------------------------------------------------------


def _check_text(sql: str) -> None:
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRejectedError("The SQL is empty.")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRejectedError(f"The SQL is longer than {MAX_SQL_CHARS} characters.")
    if "\x00" in sql:
        raise QueryRejectedError("The SQL contains a NUL character.")
    if _EXECUTABLE_COMMENT.search(sql):
        raise QueryRejectedError("MySQL executable comments (/*! … */ and /*M! … */) are not allowed.")
    odd = next((c for c in sql if c not in " \t\r\n" and (c.isspace() or unicodedata.category(c) == "Cc")), None)
    if odd is not None:
        raise QueryRejectedError(
            f"The SQL contains the character U+{ord(odd):04X} (unusual whitespace or a control character); "
            "use plain spaces and line breaks."
        )


def _tokenize(sql: str, dialect: Dialect) -> list[Token]:
    try:
        return dialect.tokenize(sql)
    except SqlglotError as exc:
        raise QueryRejectedError(f"The SQL could not be parsed: {str(exc).splitlines()[0]}") from None


def _check_tokens(sql: str, tokens: Sequence[Token], kind: str) -> None:
    """Refuse tokens whose meaning depends on the server, or that MySQL would act on."""
    for index, token in enumerate(tokens):
        if _is_unicode_escape(tokens, index):
            raise QueryRejectedError("Unicode-escaped identifiers and strings (U&) are not allowed.")
        if kind != "sqlite" and token.token_type in (TokenType.STRING, TokenType.NATIONAL_STRING):
            if _ODD_BACKSLASHES_BEFORE_QUOTE.search(sql[token.start : token.end + 1]):
                raise QueryRejectedError(
                    "A backslash before a quote is read differently depending on server settings; "
                    "double the quote instead ('it''s')."
                )
        if kind == "mysql":
            _check_mysql_token(token)


def _is_unicode_escape(tokens: Sequence[Token], index: int) -> bool:
    token = tokens[index]
    if token.token_type == TokenType.UNICODE_STRING:
        return True
    following = tokens[index + 1 : index + 3]
    return (
        token.text in ("U", "u")
        and len(following) == 2
        and following[0].token_type == TokenType.AMP
        and following[1].token_type in (TokenType.IDENTIFIER, TokenType.STRING)
    )


def _check_mysql_token(token: Token) -> None:
    if token.token_type == TokenType.SESSION_PARAMETER:
        raise QueryRejectedError("Server variables (@@…) are not allowed in report queries.")
    if token.token_type == TokenType.COLON_EQ:
        raise QueryRejectedError("Assigning variables (@x := …) is not allowed in report queries.")
    if token.text.upper() in ("OUTFILE", "DUMPFILE") and token.token_type != TokenType.IDENTIFIER:
        raise QueryRejectedError("INTO OUTFILE and INTO DUMPFILE are not allowed in report queries.")


# --- the statement -------------------------------------------------------------------


def _parse(sql: str, tokens: list[Token], dialect: Dialect) -> exp.Expr:
    try:
        statements = [s for s in dialect.parser().parse(tokens, sql) if s is not None]
    except ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc).splitlines()[0]
        raise QueryRejectedError(f"The SQL could not be parsed: {first}") from None
    except SqlglotError as exc:
        raise QueryRejectedError(f"The SQL could not be parsed: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise QueryRejectedError(f"Exactly one statement is allowed; found {len(statements)}.")
    tree = statements[0]
    while isinstance(tree, exp.Subquery | exp.Paren) and tree.this is not None:
        tree = tree.this  # "(select …)" is still one SELECT
    return tree


def _check_statement(tree: exp.Expr) -> None:
    if not isinstance(tree, _SELECTS):
        raise QueryRejectedError(f"Only SELECT statements may run; this is a {tree.key.upper()} statement.")
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise QueryRejectedError(f"Only read-only SELECTs may run; found {node.key.upper()} inside the query.")
        if isinstance(node, exp.Lock):
            raise QueryRejectedError("Row locks (FOR UPDATE / FOR SHARE) are not allowed in report queries.")


def _alias_positions(tree: exp.Expr) -> set[int]:
    """Where alias names stand that a column list follows: `g(x)`, `digits (n) AS` read like calls but are not."""
    return {
        node.meta["start"]
        for node in tree.find_all(exp.Identifier)
        if isinstance(node.parent, exp.TableAlias) and node.arg_key == "this" and "start" in node.meta
    }


# --- names ---------------------------------------------------------------------------


class _Names:
    """Names in the token stream as the database reads them."""

    def __init__(self, sql: str, tokens: Sequence[Token], kind: str):
        self.sql, self.tokens, self.kind = sql, tokens, kind

    def name(self, index: int) -> tuple[str, bool] | None:
        """The name tokens[index] stands for, and whether it was quoted (None: not a name)."""
        token = self.tokens[index]
        if token.token_type == TokenType.IDENTIFIER:
            return token.text, True
        if token.token_type in (TokenType.STRING, TokenType.NATIONAL_STRING):
            ansi_quoted = self.kind == "mysql" and self.sql[token.start] == '"'  # MySQL with ANSI_QUOTES
            return (token.text, True) if ansi_quoted else None
        if token.token_type in _LITERALS:
            return None
        if _WORD.fullmatch(token.text):
            return token.text.translate(_ASCII_LOWER), False
        trailing = _TRAILING_WORD.search(token.text)  # a merged keyword such as USER-DEFINED
        return (trailing.group(1).translate(_ASCII_LOWER), False) if trailing else None

    def qualifier(self, index: int) -> list[str] | None:
        """The schema (and catalog) written before tokens[index]; None if something other than names is."""
        parts: list[str] = []
        while index >= 2 and self.tokens[index - 1].token_type == TokenType.DOT:
            name = self.name(index - 2)
            if name is None:
                return None
            parts.insert(0, name[0])
            index -= 2
        return parts


def _skeleton(name: str) -> str:
    """A name folded the way a lenient server might (case, accents, compatibility forms)."""
    decomposed = unicodedata.normalize("NFKD", name.replace("ı", "i"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


# --- calls ---------------------------------------------------------------------------


def _check_calls(names: _Names, aliases: set[int]) -> None:
    """Every name a "(" follows is a call unless it is syntax or an alias with a column list."""
    tokens = names.tokens
    for index in range(len(tokens) - 1):
        if tokens[index + 1].token_type != TokenType.L_PAREN or tokens[index].start in aliases:
            continue
        name = names.name(index)
        if name is not None and not _is_structural(tokens, index, names.kind):
            _check_call(name, names.qualifier(index), names.kind)


def _is_structural(tokens: Sequence[Token], index: int, kind: str) -> bool:
    token = tokens[index]
    if token.token_type in (TokenType.IDENTIFIER, TokenType.STRING, TokenType.NATIONAL_STRING):
        return False
    word = token.text.upper()
    if word in _STRUCTURAL or word in _STRUCTURAL_BY_KIND[kind]:
        return True
    before = tokens[index - 1].text.upper() if index else ""
    return before in _STRUCTURAL_AFTER.get(word, ())


def _check_call(name: tuple[str, bool], qualifier: list[str] | None, kind: str) -> None:
    text, quoted = name
    shown = ".".join([*(qualifier or []), text])
    if quoted and kind == "mysql":
        raise QueryRejectedError(f"Quoted function names ({shown}) call stored functions in MySQL; not allowed.")
    if kind == "sqlite":
        text = text.translate(_ASCII_LOWER)
    schemas = lists.ALLOWED_FUNCTION_SCHEMAS[kind]
    qualified_ok = qualifier == [] or (qualifier is not None and len(qualifier) == 1 and qualifier[0] in schemas)
    if not qualified_ok or text not in lists.ALLOWED_FUNCTIONS[kind]:
        raise QueryRejectedError(FUNCTION_REFUSED.format(name=shown))


# --- relations -----------------------------------------------------------------------


def _check_relations(names: _Names) -> None:
    for index in range(len(names.tokens)):
        name = names.name(index)
        refused = name and _refused_relation(names, index, _skeleton(name[0]))
        if refused:
            raise QueryRejectedError(RELATION_REFUSED.format(name=refused))


def _refused_relation(names: _Names, index: int, name: str) -> str | None:
    if names.kind == "postgresql":
        hit = name in lists.PG_REFUSED_RELATIONS or name.startswith(lists.PG_REFUSED_PREFIXES)
        return name if hit else None
    if names.kind == "sqlite":
        hit = name in lists.SQLITE_REFUSED_RELATIONS or name.startswith(lists.SQLITE_REFUSED_PREFIXES)
        return name if hit else None
    return _refused_mysql_relation(names, index, name)


def _refused_mysql_relation(names: _Names, index: int, name: str) -> str | None:
    """MySQL: `mysql.…`, `performance_schema.…`, `sys.…` and some `information_schema` views."""
    tokens = names.tokens
    if index + 2 >= len(tokens) or tokens[index + 1].token_type != TokenType.DOT:
        return None
    if name in lists.MYSQL_REFUSED_SCHEMAS:
        return f"{name}.*"
    table = names.name(index + 2) if name == "information_schema" else None
    table_name = _skeleton(table[0]) if table else ""
    refused = table_name in lists.MYSQL_REFUSED_INFORMATION_SCHEMA or table_name.startswith(
        lists.MYSQL_REFUSED_INFORMATION_SCHEMA_PREFIXES
    )
    return f"information_schema.{table_name}" if table and refused else None
