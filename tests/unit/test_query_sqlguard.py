"""The raw-SQL guard: one read-only SELECT passes, everything else is refused with a reason."""

import pytest

from shared.errors import QueryRejectedError
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
        ("begin", "TRANSACTION"),
        ("explain analyze delete from orders", "COMMAND"),
        ("", "empty"),
        ("selec 1 from", "parse"),
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
