"""The raw-SQL guard: one read-only SELECT calling only allowed functions passes; the rest is refused with a reason."""

import sqlite3
import uuid

import pytest
import sqlalchemy as sa

from shared.db import transaction
from shared.errors import QueryRejectedError
from shared.models import SavedQuery, User
from shared.query import sql_functions
from shared.query.sqlguard import check_select


@pytest.mark.parametrize(
    "sql",
    [
        "select 1",
        "select 1;",
        "SELECT region, sum(amount) FROM sales.orders WHERE note = 'a;b' GROUP BY 1",
        "with t as (select 1 as a) select * from t",
        "select a from t union all select b from u",
        "select '100%' as pct, 'it''s' as quote",
        "(select 1)",
        "select now()::date, amount::numeric(10, 2) from orders",
        "select pg_sleep(0.1)",
    ],
)
def test_single_selects_pass(sql):
    assert check_select(sql, "postgresql").rstrip(";") == sql.strip().rstrip(";")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("delete from orders", "DELETE"),
        ("update orders set amount = 0", "UPDATE"),
        ("insert into orders values (1)", "INSERT"),
        ("select 1; drop table orders", "Exactly one statement"),
        ("select 1; commit; create table x (a int)", "Exactly one statement"),
        ("with gone as (delete from orders returning *) select * from gone", "DELETE"),
        ("with up as (update orders set amount = 0 returning *) select * from up", "UPDATE"),
        ("select * into copy_of_orders from orders", "INTO"),
        ("select * from orders for update", "FOR UPDATE"),
        ("select set_config('statement_timeout', '0', false)", "set_config"),
        ("select nextval('orders_id_seq')", "nextval"),
        ("select pg_terminate_backend(42)", "pg_terminate_backend"),
        ("drop table orders", "DROP"),
        ("truncate orders", "TRUNCATE"),
        ("set statement_timeout = 0", "SET"),
        ("copy orders to '/tmp/x'", "COPY"),
        ("copy (select 1) to program 'id'", "COPY"),
        ("begin", "TRANSACTION"),
        ("explain analyze delete from orders", "COMMAND"),
        ("", "empty"),
        ("selec 1 from", "parse"),
        ("select 'never closed", "parse"),
    ],
)
def test_anything_else_is_refused_with_a_reason(sql, reason):
    with pytest.raises(QueryRejectedError) as caught:
        check_select(sql, "postgresql")
    assert reason.lower() in caught.value.message.lower()


def test_mysql_and_sqlite_dialects_are_guarded_too():
    assert check_select("select `region` from orders", "mysql")
    with pytest.raises(QueryRejectedError):
        check_select("select 1; delete from orders", "mysql")
    with pytest.raises(QueryRejectedError):
        check_select("attach database '/tmp/x' as x", "sqlite")


# --- the allow-list keeps ordinary BI SQL working ----------------------------------------

ALLOWED = {
    "postgresql": [
        "select 1::int as i, 2.50::numeric as d, date '2024-03-01' as day, timestamptz '2024-03-01 12:00Z' as at,"
        " timestamp '2024-03-01 12:00' as wall, true as b, null::text as nothing, gen_random_uuid() as u",
        "select g, pg_sleep(0.05) from generate_series(1, 400) g",
        "select 42 as answer from pg_sleep(3)",
        "select g as id, (g * 7 % 1000)::numeric / 4 as amount,"
        " timestamptz '2024-01-01' + g * interval '1 second' as at, 'row ' || g as label from generate_series(1, 9) g",
        "select g as order_id, case when g % 1000 = 0 then '=HYPERLINK(\"http://evil\")' else 'ok' end as note,"
        " (g * 1.25)::numeric(12, 2) as amount, date '2026-01-01' + (g % 365) as day,"
        " timestamptz '2026-11-27 23:30:00+00' + make_interval(secs => g) as closed_at from generate_series(1, 9) as g",
        "select id, region, amount from public.orders order by amount desc limit 5",
        "select region, date_trunc('month', ordered_on) as m, sum(amount), count(*) filter (where amount > 10),"
        " avg(amount) over (partition by region order by ordered_on rows between 2 preceding and current row)"
        " from public.orders group by rollup(region, 2) having sum(amount) > 0 order by 1 nulls last",
        "select percentile_cont(0.5) within group (order by amount), percentile_disc(0.9) within group (order by x),"
        " mode() within group (order by region), string_agg(region, ',' order by region), array_agg(distinct region),"
        " json_agg(x), jsonb_agg(x), bool_and(x), bool_or(x), every(x), stddev(x), stddev_samp(x), var_pop(x) from t",
        "select row_number() over w, rank() over w, dense_rank() over w, lag(x, 1) over w, lead(x) over w,"
        " first_value(x) over w, last_value(x) over w, nth_value(x, 2) over w, ntile(4) over w, percent_rank() over w,"
        " cume_dist() over w from t window w as (order by x)",
        "select lower(x), upper(x), trim(both ' ' from x), substring(x from 1 for 2), replace(x, 'a', 'b'),"
        " concat(a, b), concat_ws(',', a, b), left(x, 1), right(x, 1), length(x), position('a' in x),"
        " split_part(x, ',', 1), regexp_replace(x, '\\d+', 'N', 'g'), format('%s', x), to_char(d, 'YYYY-MM'),"
        " lpad(x, 3, '0'), initcap(x) from t",
        "select now(), current_date, current_timestamp, localtimestamp(0), date_trunc('day', d), extract(epoch from d),"
        " date_part('year', d), to_date('2020', 'YYYY'), to_timestamp(1), age(d), make_date(2020, 1, 1),"
        " d at time zone 'UTC', justify_interval(interval '30 days') from t",
        "select coalesce(a, b), nullif(a, b), greatest(a, b), least(a, b), case x when 1 then 'a' end, a->'b', a->>'b',"
        " a#>'{b}', jsonb_path_query(a, '$.b'), jsonb_extract_path_text(a, 'b'), array_length(arr, 1), unnest(arr),"
        " cardinality(arr), 'pg_class'::regclass::oid, 'lower'::regproc from t",
        "select x from t where exists (select 1 from u where lower(u.x) = t.x) and x in (select y from v)"
        " and x = any(array[1, 2]) and not (x between 1 and 2) and x like 'a%'",
        "with recursive d(n) as (select 1 union all select n + 1 from d where n < 10),"
        " e as materialized (select * from d) select n from e join lateral (select n * 2 as m) l(m) on true"
        " left join (select 1 as z) q on true",
        "select * from generate_series(1, 10) as g(x), lateral unnest(array[1, 2]) with ordinality as u(v, i)",
        'select pg_catalog.lower(x), "lower"(x), LOWER(x), lower /* c */ (x), round(x::numeric, 2),'
        " x::character varying(20), x::timestamp(3) with time zone, cast(x as decimal(10, 2)),"
        " current_setting('timezone') from t",
        "select count(*) from information_schema.tables where table_schema = 'public'",
        "select column_name, data_type from information_schema.columns",
        "select xpath('/a/text()', '<a>1</a>'::xml)",
        "select region, sum(amount) from t group by grouping sets ((region), ()) fetch first 5 rows only",
        "select 'it''s', E'a\\nb', $$x$$, 'C:\\\\' as path, '%\\d+' as pattern",
        "select * from t tablesample bernoulli (10) repeatable (1)",
        "select * from pg_status join pg_class on true",
    ],
    "mysql": [
        "SELECT id, amount, order_date, created_at, shipped_at, customer, NULL AS nothing FROM orders"
        " WHERE id IN (3, 4) ORDER BY id;",
        "SELECT SLEEP(60) AS slept",
        "WITH RECURSIVE digits (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM digits WHERE n < 499)"
        " SELECT a.n * 500 + b.n + 1 AS id, CAST((a.n * 500 + b.n) % 1000 AS DECIMAL(10, 2)) / 4 AS amount,"
        " TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (a.n * 500 + b.n) SECOND AS at,"
        " CONCAT('biapp-stream ', REPEAT('x', 200)) AS label FROM digits a CROSS JOIN digits b WHERE a.n < 400",
        "select ifnull(a, b), if(a, 1, 2), date_add(d, interval 1 day), datediff(a, b), date_format(d, '%Y'),"
        " str_to_date(x, '%Y'), group_concat(x order by y separator ','), substr(x, 1, 2), json_extract(x, '$.a'),"
        " x->'$.a', x->>'$.a', now(), curdate(), year(d), month(d), unix_timestamp(), from_unixtime(1),"
        " timestampdiff(day, a, b), last_day(d), weekday(d), convert(x, char(10)), cast(x as datetime(6)) from t",
        "select `region`, count(*) from orders where amount div 2 > 1 and name regexp 'a'"
        " group by `region` with rollup",
        "select count(*) from information_schema.tables",
        "select x from t force index (primary)",
        "select 'a\\\\' as backslash, \"x\" as s",
        "select row_number() over (partition by a order by b), percent_rank() over (order by b) from t",
    ],
    "sqlite": [
        "select strftime('%Y', d), date(d), datetime(d), julianday(d), iif(a, 1, 2), ifnull(a, b),"
        " json_extract(x, '$.a'), total(x), group_concat(x, ','), printf('%d', x), cast(x as integer) from t",
        "select region, revenue from sales order by revenue desc",
        "select count(*) as n from sales",
        "select * from sales where 1 = 0",
        "select name from sqlite_master where type = 'table'",
        'select [x], `y`, "z", "lower"(x) from t',
    ],
}


@pytest.mark.parametrize(("kind", "sql"), [(k, s) for k, items in ALLOWED.items() for s in items])
def test_ordinary_report_sql_is_allowed(kind, sql):
    assert check_select(sql, kind) == sql.strip().rstrip(";").rstrip()


# --- functions, relations and tricks that are refused ------------------------------------

FUNCTION = "is not allowed in report queries (only functions without side effects or server access are)"
RELATION = "is not allowed in report queries (it exposes credentials or server state)"

REFUSED = {
    "postgresql": [
        ("select query_to_xml('select pg_read_file(''/etc/passwd'')',true,false,'')::text", "query_to_xml()"),
        ("select cursor_to_xml('c', 1, false, false, '')", "cursor_to_xml()"),
        ("select table_to_xml('t', true, false, '')", "table_to_xml()"),
        ("select database_to_xml(true, false, '')", "database_to_xml()"),
        ("select * from dblink('host=x', 'select 1') as t(a int)", "dblink()"),
        ("select dblink_exec('x', 'drop table t')", "dblink_exec()"),
        ("select lo_import('/etc/passwd')", "lo_import()"),
        ("select pg_ls_dir('.')", "pg_ls_dir()"),
        ("select pg_read_file('/etc/passwd')", "pg_read_file()"),
        ("select pg_read_binary_file('/etc/passwd')", "pg_read_binary_file()"),
        ("select pg_advisory_lock(1)", "pg_advisory_lock()"),
        ("select setval('s', 1)", "setval()"),
        ("select txid_current()", "txid_current()"),
        ("select setseed(0.5)", "setseed()"),
        ("select version()", "version()"),
        ("select pg_stat_get_activity(null)", "pg_stat_get_activity()"),
        ("select my_func(1)", "my_func()"),
        ("select public.evil()", "public.evil()"),
        ("select sales.bump()", "sales.bump()"),
        ('select "LOWER"(x) from t', "LOWER()"),
        ('select "PG_CATALOG".lower(x) from t', "PG_CATALOG.lower()"),
        ("select db.pg_catalog.lower('x')", "db.pg_catalog.lower()"),
        ("select user-defined(1)", "defined()"),
        ("select usename, passwd from pg_shadow", "pg_shadow"),
        ("select * from pg_catalog.pg_shadow", "pg_shadow"),
        ('select * from "pg_shadow"', "pg_shadow"),
        ("SELECT * FROM PG_SHADOW", "pg_shadow"),
        ("select * from (table pg_shadow) t", "pg_shadow"),
        ("select * from only pg_authid", "pg_authid"),
        ("select * from pg_user_mappings", "pg_user_mappings"),
        ("select * from information_schema.user_mapping_options", "user_mapping_options"),
        ("select * from pg_file_settings", "pg_file_settings"),
        ("select * from pg_hba_file_rules", "pg_hba_file_rules"),
        ("select * from pg_ident_file_mappings", "pg_ident_file_mappings"),
        ("select query from pg_stat_activity", "pg_stat_activity"),
        ("select * from pg_stat_ssl", "pg_stat_ssl"),
        ("select * from pg_settings", "pg_settings"),
        ("select * from pg_stat_statements", "pg_stat_statements"),
        ("select * from pg_statio_user_tables", "pg_statio_user_tables"),
        ("select * from pg_stats where tablename = 'users'", "pg_stats"),
        ("select 1 from t join pg_shadow using (usename)", "pg_shadow"),
    ],
    "mysql": [
        ("select load_file('/etc/hostname')", "load_file()"),
        ("select sys_exec('id')", "sys_exec()"),
        ("select benchmark(1000000, md5('a'))", "benchmark()"),
        ("select get_lock('a', 1)", "get_lock()"),
        ("select release_lock('a')", "release_lock()"),
        ("select master_pos_wait('f', 1)", "master_pos_wait()"),
        ("select version()", "version()"),
        ("select my_func(1)", "my_func()"),
        ("select db.evil()", "db.evil()"),
        ("select `load_file`('x')", "Quoted function names"),
        ("select `lower`('x')", "Quoted function names"),
        ("select 1 --(load_file('/etc/passwd'))", "load_file()"),
        ("select * from t into outfile '/tmp/x'", "INTO OUTFILE"),
        ("select * from t into dumpfile '/tmp/x'", "INTO DUMPFILE"),
        ("select 1 into @v", "INTO"),
        ("select @@datadir", "Server variables"),
        ("select @a := 1", "Assigning variables"),
        ("select * from mysql.user", "mysql.*"),
        ("select * from `mysql`.`user`", "mysql.*"),
        ("select * from MYSQL.user", "mysql.*"),
        ('select * from "mysql"."user"', "mysql.*"),
        ("table mysql.user", "mysql.*"),
        ("select * from performance_schema.threads", "performance_schema.*"),
        ("select * from sys.session", "sys.*"),
        ("select * from information_schema.USER_PRIVILEGES", "information_schema.user_privileges"),
        ("select * from information_schema.`PROCESSLIST`", "information_schema.processlist"),
        ("select * from INFORMATION_SCHEMA.INNODB_TRX", "information_schema.innodb_trx"),
        ("select * from information_schema.global_variables", "information_schema.global_variables"),
    ],
    "sqlite": [
        ("select load_extension('x')", "load_extension()"),
        ("select readfile('/etc/passwd')", "readfile()"),
        ("select writefile('/tmp/x', 'y')", "writefile()"),
        ("select fts3_tokenizer('x')", "fts3_tokenizer()"),
        ("select * from fsdir('/etc')", "fsdir()"),
        ("select * from pragma_table_info('t')", "pragma_table_info()"),
        ("select last_insert_rowid()", "last_insert_rowid()"),
        ("select main.lower(x) from t", "main.lower()"),
        ("select my_func(1)", "my_func()"),
        ("select * from pragma_database_list", "pragma_database_list"),
        ("select * from sqlite_dbpage", "sqlite_dbpage"),
        ("select * from main.sqlite_dbpage", "sqlite_dbpage"),
        ("attach database '/tmp/x' as x", "ATTACH"),
        ("pragma table_info(t)", "PRAGMA"),
    ],
}


@pytest.mark.parametrize(("kind", "sql", "named"), [(k, s, n) for k, items in REFUSED.items() for s, n in items])
def test_forbidden_functions_relations_and_statements_are_refused_by_name(kind, sql, named):
    with pytest.raises(QueryRejectedError) as caught:
        check_select(sql, kind)
    assert named in caught.value.message
    if named.endswith("()"):
        assert FUNCTION in caught.value.message


def test_the_refusal_names_the_function_in_a_sentence():
    with pytest.raises(QueryRejectedError) as caught:
        check_select("select query_to_xml('select 1', true, false, '')::text")
    assert caught.value.message == (
        "The function query_to_xml() is not allowed in report queries "
        "(only functions without side effects or server access are)."
    )
    assert caught.value.status == 422


# The same attack wherever it hides, however its name is written.
PLACES = [
    "select {call}",
    "select x from t where x = {call}",
    "select x from t order by {call}",
    "select x from t group by x having max({call}) > ''",
    "with a as (select {call} as f) select * from a",
    "with recursive r(n) as (select 1 union all select n + 1 from r where {call} is null) select * from r",
    "select * from t, lateral (select {call}) l",
    "select (select {call})",
    "select x from t where exists (select 1 from u where u.y = {call})",
    "select count(*) over (order by {call}) from t",
    "select sum(x) filter (where {call} > '') from t",
    "select a from t union select {call}",
    "select case when x then {call} end from t",
    "select coalesce(x, {call}) from t",
]
PLACES_BY_KIND = {"postgresql": [*PLACES, "select array(select {call})"], "mysql": PLACES, "sqlite": PLACES}
SPELLINGS = {
    "postgresql": [
        "pg_read_file('/etc/passwd')",
        "PG_READ_FILE('/etc/passwd')",
        "Pg_Read_File('/etc/passwd')",
        "\"pg_read_file\"('/etc/passwd')",
        "pg_catalog.pg_read_file('/etc/passwd')",
        "pg_catalog . pg_read_file ('/etc/passwd')",
        '"pg_catalog"."pg_read_file"(\'/etc/passwd\')',
        "pg_read_file /* gap */ ('/etc/passwd')",
        "pg_read_file\n\t('/etc/passwd')",
        "pg_read_file/**/('/etc/passwd')",
    ],
    "mysql": [
        "load_file('/etc/passwd')",
        "LOAD_FILE('/etc/passwd')",
        "load_file /* gap */ ('/etc/passwd')",
        "load_file\n('/etc/passwd')",
        "`load_file`('/etc/passwd')",
        "mysql.load_file('/etc/passwd')",
    ],
    "sqlite": [
        "load_extension('/tmp/x.so')",
        "LOAD_EXTENSION('/tmp/x.so')",
        "\"load_extension\"('/tmp/x.so')",
        "[load_extension]('/tmp/x.so')",
        "main.load_extension('/tmp/x.so')",
        "load_extension -- gap\n('/tmp/x.so')",
    ],
}


@pytest.mark.parametrize(
    ("kind", "place", "call"),
    [(kind, place, call) for kind, calls in SPELLINGS.items() for place in PLACES_BY_KIND[kind] for call in calls],
)
def test_a_forbidden_call_is_found_wherever_it_is_and_however_it_is_spelt(kind, place, call):
    with pytest.raises(QueryRejectedError) as caught:
        check_select(place.format(call=call), kind)
    message = caught.value.message.lower()
    assert "load" in message or "read_file" in message or "quoted" in message


@pytest.mark.parametrize(
    "sql",
    [
        "select U&\"pg\\005fread\\005ffile\"('/etc/hostname')",
        "select u&\"pg\\005fread\\005ffile\"('/etc/hostname')",
        "select U&\"pg!005fread!005ffile\" UESCAPE '!' ('/etc/hostname')",
        'select * from U&"pg\\005fshadow"',
        "select U&'\\0041' as a",
        "select pg_catalog.U&\"pg\\005fread\\005ffile\"('/etc/hostname')",
    ],
)
def test_unicode_escaped_names_and_strings_are_refused(sql):
    with pytest.raises(QueryRejectedError, match="U&"):
        check_select(sql, "postgresql")


@pytest.mark.parametrize("kind", ["mysql", "postgresql", "sqlite"])
@pytest.mark.parametrize(
    "sql",
    [
        "select 1 /*!50000 , load_file('/etc/hostname') */",
        "select 1 /*!50000 into outfile '/tmp/x' */",
        "select 1 /*! , load_file('/etc/hostname') */",
        "select 1 /*M!100000 , load_file('/etc/hostname') */",
        "select 1 /*m! , 2 */",
        "select 1 from t where a = '/*!'",
    ],
)
def test_mysql_executable_comments_are_refused_in_every_dialect(kind, sql):
    with pytest.raises(QueryRejectedError, match="executable comments"):
        check_select(sql, kind)


def test_ordinary_comments_stay_allowed():
    assert check_select("select 1 /* a note */ -- another\n", "mysql")
    assert check_select("select 1 /* /* nested */ */", "postgresql")


@pytest.mark.parametrize(
    ("kind", "sql"),
    [
        # With standard_conforming_strings off (PostgreSQL) or NO_BACKSLASH_ESCAPES (MySQL) the string
        # would end at the backslash and pg_read_file / load_file would run.
        ("postgresql", "select 'a\\', ' , pg_read_file(' x ') , '"),
        ("postgresql", "select 'C:\\' as path"),
        ("mysql", "select 'it\\'s'"),
        ("mysql", 'select "say \\"hi\\""'),
    ],
)
def test_backslash_quotes_whose_meaning_depends_on_server_settings_are_refused(kind, sql):
    with pytest.raises(QueryRejectedError, match="backslash"):
        check_select(sql, kind)


@pytest.mark.parametrize("character", ["\u00a0", "\x0b", "\x0c", "\u2028", "\x1b"])
def test_unusual_whitespace_and_control_characters_are_refused(character):
    with pytest.raises(QueryRejectedError, match=f"U\\+{ord(character):04X}"):
        check_select(f"select lower{character}(x) from t", "postgresql")


def test_comments_end_where_the_database_ends_them():
    # PostgreSQL ends a -- comment at a carriage return; MySQL needs a space after --.
    with pytest.raises(QueryRejectedError, match="pg_read_file"):
        check_select("select 1 -- x\r, pg_read_file('/etc/passwd')", "postgresql")
    with pytest.raises(QueryRejectedError, match="load_file"):
        check_select("select 1 --(load_file('/etc/passwd'))", "mysql")
    with pytest.raises(QueryRejectedError, match="pg_read_file"):
        check_select("select $$ ' $$, pg_read_file('x') -- '", "postgresql")


# --- the lists themselves ---------------------------------------------------------------

NEVER_ALLOWED = {
    "query_to_xml",
    "dblink",
    "dblink_exec",
    "pg_read_file",
    "pg_ls_dir",
    "lo_import",
    "lo_export",
    "set_config",
    "nextval",
    "setval",
    "txid_current",
    "pg_advisory_lock",
    "pg_terminate_backend",
    "load_file",
    "sys_exec",
    "sys_eval",
    "benchmark",
    "get_lock",
    "release_lock",
    "master_pos_wait",
    "load_extension",
    "readfile",
    "writefile",
    "fts3_tokenizer",
    "version",
    "setseed",
}


@pytest.mark.parametrize("kind", sorted(sql_functions.ALLOWED_FUNCTIONS))
def test_allow_lists_are_lower_case_names_without_the_dangerous_ones(kind):
    allowed = sql_functions.ALLOWED_FUNCTIONS[kind]
    assert all(name == name.lower() and name.isidentifier() for name in allowed)
    assert not allowed & NEVER_ALLOWED
    assert {"count", "sum", "row_number", "lower", "coalesce", "cast"} <= allowed


def test_sleep_stays_allowed_for_timeout_tests():
    assert "pg_sleep" in sql_functions.ALLOWED_FUNCTIONS["postgresql"]
    assert "sleep" in sql_functions.ALLOWED_FUNCTIONS["mysql"]


# --- over HTTP: refused at save and at run with 422 -------------------------------------


@pytest.fixture
def sqlite_source(api):
    with sqlite3.connect(f"{api.settings.sqlite_root}/ops.db") as connection:
        connection.execute("create table jobs (name text, failed integer)")
        connection.execute("insert into jobs values ('etl', 0)")
    admin = api.create_user("admin@example.com", "admin")
    source = admin.post("/api/data-sources", json={"name": "Ops", "kind": "sqlite", "path": "ops.db"})
    assert source.status_code == 201, source.get_json()
    return admin, source.get_json()["id"]


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("select load_extension('/tmp/evil.so')", "load_extension()"),
        ("select * from pragma_database_list", "pragma_database_list"),
        ("select 1 /*!50000 , 2 */", "executable comments"),
        ("select 'never closed", "could not be parsed"),
    ],
)
def test_saving_a_refused_query_answers_422_naming_the_reason(sqlite_source, sql, named):
    admin, source_id = sqlite_source
    response = admin.post("/api/saved-queries", json={"name": "x", "data_source_id": source_id, "sql": sql})
    assert response.status_code == 422
    assert named in response.get_json()["errors"]["sql"][0]


def test_a_stored_query_that_is_now_refused_answers_422_at_preview(api, sqlite_source):
    admin, source_id = sqlite_source
    saved = admin.post(
        "/api/saved-queries", json={"name": "Jobs", "data_source_id": source_id, "sql": "select name from jobs"}
    )
    assert saved.status_code == 201
    assert admin.post(f"/api/saved-queries/{saved.get_json()['id']}/preview").status_code == 200
    with transaction(api.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "admin@example.com")).scalar_one()
        query = SavedQuery(
            name="Old",
            kind="sql",
            data_source_id=uuid.UUID(source_id),
            sql="select readfile('/etc/passwd')",
            owner_id=owner.id,
        )
        session.add(query)
        session.flush()
        query_id = str(query.id)
    response = admin.post(f"/api/saved-queries/{query_id}/preview")
    assert response.status_code == 422
    assert "readfile()" in response.get_json()["message"]
