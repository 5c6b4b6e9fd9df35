"""The raw-SQL guard in front of real databases: every attack it refuses would have worked.

Each case runs twice on a throwaway database as the superuser (PostgreSQL `postgres`,
MariaDB `root`): once through the guard, the way the engine runs raw SQL, where it must be
refused before anything reaches the server; and once directly, as the control that shows
the attack is real (a file read, a password hash, a write through a function). The allowed
side is checked too: ordinary report SQL passes the guard and runs.
"""

from __future__ import annotations

import os
import sqlite3
import uuid

import psycopg
import pymysql
import pytest

from shared.errors import QueryRejectedError
from shared.query import sql_functions
from shared.query.sqlguard import check_select
from tests.conftest import PG_ADMIN_DSN, create_pg_database, drop_pg_database, mysql_admin, require

# --- controls: what the attack achieves when run directly ---------------------------------


def reads_a_file(rows, _count_writes):
    assert rows and isinstance(rows[0][0], str) and rows[0][0].strip(), rows


def returns_rows(rows, _count_writes):
    assert rows, "the attack returned nothing"


def runs(_rows, _count_writes):
    """The statement ran without error (its effect is on the server, not in the rows)."""


def writes(_rows, count_writes):
    assert count_writes() > 0, "the function did not write"


def two_columns(rows, _count_writes):
    assert rows and len(rows[0]) == 2, "the server did not run the code inside the comment"


# --- PostgreSQL ---------------------------------------------------------------------------

PG_ATTACKS = [
    ("select pg_read_file('/etc/hostname')", reads_a_file),
    ("select query_to_xml('select pg_read_file(''/etc/hostname'')', true, false, '')::text", reads_a_file),
    ("select U&\"pg\\005fread\\005ffile\"('/etc/hostname')", reads_a_file),
    ("select U&\"pg!005fread!005ffile\" UESCAPE '!' ('/etc/hostname')", reads_a_file),
    ("select encode(pg_read_binary_file('/etc/hostname'), 'escape')", reads_a_file),
    ("select f from pg_ls_dir('.') as f", returns_rows),
    ("select usename, passwd from pg_shadow", returns_rows),
    ("select rolname, rolpassword from pg_catalog.pg_authid", returns_rows),
    ('select * from "pg_shadow"', returns_rows),
    ("SELECT * FROM PG_CATALOG.PG_SHADOW", returns_rows),
    ("select * from (table pg_authid) a", returns_rows),
    ("select * from pg_user_mappings", runs),
    ("select * from pg_file_settings", returns_rows),
    ("select * from pg_hba_file_rules", returns_rows),
    ("select pid, query from pg_stat_activity", returns_rows),
    ("select * from pg_stat_ssl", returns_rows),
    ("select name, setting from pg_settings where name = 'data_directory'", returns_rows),
    ("select set_config('statement_timeout', '0', false)", runs),
    ("select pg_advisory_lock(4242)", runs),
    ("select nextval('guard_seq')", runs),
    ("select txid_current()", runs),
    ("select lo_import('/etc/hostname')", runs),
    ("select public.evil()", writes),
    ("select evil()", writes),
    ("select * from dblink('{dsn}', 'select 1') as t(a int)", returns_rows),
    ("select dblink_exec('{dsn}', 'insert into audit default values')", writes),
    ("copy (select 1) to program 'cat > /dev/null'", runs),
]


def _pg_dsn(database: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture(scope="module")
def pg_guard_db():
    """A throwaway database with a table, a sequence, a writing function and (if available) dblink."""
    name = create_pg_database("biapp_guard")
    dsn = _pg_dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table audit (id serial primary key)")
        conn.execute("create sequence guard_seq")
        conn.execute(
            "create function public.evil() returns int language sql"
            " as $$ insert into audit default values returning 1 $$"
        )
        conn.execute(
            "create table orders (id int, region text, amount numeric(10, 2), ordered_on date, meta jsonb, tags text[])"
        )
        conn.execute(
            "insert into orders values (1, 'EMEA', 10.50, '2024-03-01', '{\"a\": 1}', '{x,y}'),"
            " (2, 'APAC', 7, '2024-02-01', '{\"a\": 2}', '{y}')"
        )
        try:
            conn.execute("create extension dblink")
        except psycopg.Error:
            pass  # the dblink cases skip
    yield dsn
    drop_pg_database(name)


def _pg_count(conn) -> int:
    return conn.execute("select count(*) from audit").fetchone()[0]


def _pg_prepare(conn, sql: str, dsn: str) -> str:
    if "dblink" in sql:
        if conn.execute("select count(*) from pg_extension where extname = 'dblink'").fetchone()[0] == 0:
            # The control needs dblink (PostgreSQL's contrib, shipped with Debian's server package).
            require("PostgreSQL's dblink extension", RuntimeError("not installed on this server"))
        sql = sql.replace("{dsn}", psycopg.conninfo.make_conninfo(dsn))
    return sql


@pytest.mark.parametrize(("sql", "control"), PG_ATTACKS, ids=[s[:60] for s, _ in PG_ATTACKS])
def test_postgres_attacks_are_refused_before_they_run_though_they_would_work(pg_guard_db, sql, control):
    with psycopg.connect(pg_guard_db) as conn:
        sql = _pg_prepare(conn, sql, pg_guard_db)
        before = _pg_count(conn)
        with pytest.raises(QueryRejectedError):
            conn.execute(check_select(sql, "postgresql"))  # what the engine does: the guard first
        assert _pg_count(conn) == before, "nothing reached the server"
        cursor = conn.execute(sql)  # the control, as superuser
        rows = cursor.fetchall() if cursor.description else []
        control(rows, lambda: _pg_count(conn) - before)
        conn.rollback()


PG_ALLOWED = [
    "select region, sum(amount) as revenue, count(*) filter (where amount > 8) as big from orders"
    " group by rollup(region) order by revenue desc nulls last",
    "select date_trunc('month', ordered_on) as m, avg(amount), percentile_cont(0.5) within group (order by amount)"
    " from orders group by 1",
    "select id, rank() over (order by amount desc), lag(amount) over (order by id), sum(amount) over w"
    " from orders window w as (partition by region order by id)",
    "select coalesce(nullif(region, ''), 'n/a'), meta->>'a', jsonb_path_query_first(meta, '$.a'),"
    " array_to_string(tags, ','), cardinality(tags), to_char(ordered_on, 'YYYY-MM'), extract(year from ordered_on),"
    ' amount::numeric(12, 2), cast(id as text), pg_catalog.lower(region), "lower"(region) from orders',
    "with recursive d(n) as (select 1 union all select n + 1 from d where n < 3)"
    " select n, g.x from d cross join lateral generate_series(1, n) as g(x)",
    "select string_agg(region, ',' order by region), json_agg(id), array_agg(distinct region) from orders",
    "select table_name from information_schema.tables where table_schema = 'public'",
    "select now() - interval '1 day', current_date, make_date(2024, 1, 1), age(ordered_on), current_setting('TimeZone')"
    " from orders",
    "select pg_sleep(0), gen_random_uuid(), random() < 2",
]


@pytest.mark.parametrize("sql", PG_ALLOWED, ids=[s[:50] for s in PG_ALLOWED])
def test_ordinary_report_sql_passes_and_runs_on_postgres(pg_guard_db, sql):
    with psycopg.connect(pg_guard_db) as conn:
        conn.execute("set transaction read only")
        assert conn.execute(check_select(sql, "postgresql")).fetchall() is not None


# Volatile functions that only read the clock or random numbers, or wait.
HARMLESS_VOLATILE = {
    "clock_timestamp",
    "timeofday",
    "random",
    "gen_random_uuid",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
}


def test_every_allowed_postgres_function_is_a_side_effect_free_catalog_builtin(pg_guard_db):
    names = sorted(sql_functions.ALLOWED_FUNCTIONS["postgresql"])
    with psycopg.connect(pg_guard_db) as conn:
        rows = conn.execute(
            "select proname, provolatile, prosecdef, pronamespace::regnamespace::text from pg_proc"
            " where proname = any(%s)",
            (names,),
        ).fetchall()
    assert rows
    assert {r[3] for r in rows} == {"pg_catalog"}, "an allowed name resolves to a function outside pg_catalog"
    assert not [r[0] for r in rows if r[2]], "security-definer functions are never allowed"
    assert {r[0] for r in rows if r[1] == "v"} <= HARMLESS_VOLATILE


# --- MariaDB / MySQL ----------------------------------------------------------------------

MYSQL_ATTACKS = [
    ("select load_file('/etc/hostname')", runs),  # NULL when secure_file_priv hides the file
    ("select 1 /*!50000 , load_file('/etc/hostname') */", two_columns),
    ("select 1 /*M!100000 , load_file('/etc/hostname') */", two_columns),
    ("select 1 /*! , 2 */", two_columns),
    ("select 1 --(load_file('/etc/hostname'))", runs),
    ("select user, password from mysql.user", returns_rows),
    ("select * from `mysql`.`user`", returns_rows),
    ("select host, user from mysql . db", runs),
    ("select * from information_schema.PROCESSLIST", returns_rows),
    ("select * from information_schema.USER_PRIVILEGES", returns_rows),
    ("select * from information_schema.GLOBAL_VARIABLES", returns_rows),
    ("select * from performance_schema.threads", runs),
    ("select @@datadir, @@secure_file_priv", returns_rows),
    ("select @dirty := 1", runs),
    ("select benchmark(1000, md5('a'))", runs),
    ("select get_lock('biapp_guard', 0)", runs),
    ("select release_lock('biapp_guard')", runs),
    ("select version()", returns_rows),
    ("select evil()", writes),
    ("select {db}.evil()", writes),
]


@pytest.fixture(scope="module")
def mysql_guard_db():
    """A throwaway MariaDB database with a table and a stored function that writes."""
    name = f"biapp_guard_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with mysql_admin() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    except pymysql.Error as exc:
        require("MariaDB", exc)
    with mysql_admin(name) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY)")
        cursor.execute("CREATE TABLE orders (id INT, region VARCHAR(20), amount DECIMAL(10, 2), ordered_on DATE)")
        cursor.execute("INSERT INTO orders VALUES (1, 'EMEA', 10.50, '2024-03-01'), (2, 'APAC', 7, '2024-02-01')")
        cursor.execute(
            "CREATE FUNCTION evil() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO audit VALUES (); RETURN 1; END"
        )
    yield name
    with mysql_admin() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


def _mysql_count(cursor) -> int:
    cursor.execute("SELECT count(*) FROM audit")
    return cursor.fetchone()[0]


@pytest.mark.parametrize(("sql", "control"), MYSQL_ATTACKS, ids=[s[:60] for s, _ in MYSQL_ATTACKS])
def test_mysql_attacks_are_refused_before_they_run_though_they_would_work(mysql_guard_db, sql, control):
    sql = sql.replace("{db}", mysql_guard_db)
    with mysql_admin(mysql_guard_db) as conn, conn.cursor() as cursor:
        before = _mysql_count(cursor)
        with pytest.raises(QueryRejectedError):
            cursor.execute(check_select(sql, "mysql"))  # what the engine does: the guard first
        assert _mysql_count(cursor) == before, "nothing reached the server"
        cursor.execute(sql)  # the control, as root
        rows = cursor.fetchall()
        control(rows, lambda: _mysql_count(cursor) - before)


MYSQL_ALLOWED = [
    "SELECT region, SUM(amount) AS revenue, COUNT(*) FROM orders GROUP BY region WITH ROLLUP",
    "SELECT id, IFNULL(region, 'n/a'), IF(amount > 8, 'big', 'small'), DATE_FORMAT(ordered_on, '%Y-%m'),"
    " DATE_ADD(ordered_on, INTERVAL 1 DAY), DATEDIFF(ordered_on, '2024-01-01'), CAST(amount AS DECIMAL(12, 2)),"
    " CONCAT_WS('-', region, id), ROW_NUMBER() OVER (ORDER BY amount DESC) FROM orders",
    "SELECT GROUP_CONCAT(region ORDER BY region SEPARATOR ','), JSON_ARRAYAGG(id) FROM orders",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
    "SELECT SLEEP(0) AS slept",
]


@pytest.mark.parametrize("sql", MYSQL_ALLOWED, ids=[s[:50] for s in MYSQL_ALLOWED])
def test_ordinary_report_sql_passes_and_runs_on_mariadb(mysql_guard_db, sql):
    with mysql_admin(mysql_guard_db) as conn, conn.cursor() as cursor:
        cursor.execute(check_select(sql, "mysql"))
        assert cursor.fetchall() is not None


def test_into_outfile_is_refused_whichever_way_it_is_written():
    for sql in (
        "select * from orders into outfile '/tmp/biapp_guard.csv'",
        "select * from orders into dumpfile '/tmp/biapp_guard.bin'",
        "select 1 /*!50000 into outfile '/tmp/biapp_guard.csv' */",
    ):
        with pytest.raises(QueryRejectedError):
            check_select(sql, "mysql")


# --- SQLite (the library in this process) --------------------------------------------------

SQLITE_ATTACKS = [
    ("select file from pragma_database_list", reads_a_file),
    ("select name from pragma_table_info('orders')", returns_rows),
    ("attach database ':memory:' as other", runs),
]


@pytest.mark.parametrize(("sql", "control"), SQLITE_ATTACKS, ids=[s for s, _ in SQLITE_ATTACKS])
def test_sqlite_attacks_are_refused_before_they_run_though_they_would_work(tmp_path, sql, control):
    connection = sqlite3.connect(tmp_path / "sales.db")
    try:
        connection.execute("create table orders (region text, amount numeric)")
        with pytest.raises(QueryRejectedError):
            connection.execute(check_select(sql, "sqlite"))
        control(connection.execute(sql).fetchall(), lambda: 0)
    finally:
        connection.close()
