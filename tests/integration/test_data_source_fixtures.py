"""The logins tests give their data sources are what a real deployment should use: a database of
their own (never the application's) read by a plain login that can SELECT and nothing more."""

from __future__ import annotations

import psycopg
import pymysql
import pytest
import sqlalchemy as sa

from tests.conftest import mysql_admin


def reader_dsn(data) -> str:
    return f"postgresql://{data.username}:{data.password}@{data.host}:{data.port}/{data.database}"


def test_the_pg_data_database_is_not_the_application_database(pg_url, pg_data_database):
    assert sa.engine.make_url(pg_url).database != pg_data_database.database


def test_the_pg_reader_holds_no_dangerous_attribute_or_role(pg_data_database):
    with psycopg.connect(pg_data_database.admin_dsn) as conn:
        row = conn.execute(
            "select rolsuper, rolreplication, rolbypassrls, rolcreatedb, rolcreaterole, rolcanlogin"
            " from pg_roles where rolname = %s",
            (pg_data_database.username,),
        ).fetchone()
        assert row == (False, False, False, False, False, True)
        dangerous = conn.execute(
            "select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid"
            " join pg_roles u on u.oid = m.member where u.rolname = %s",
            (pg_data_database.username,),
        ).fetchall()
        assert dangerous == []


def test_the_pg_reader_reads_tables_created_later_and_creates_none(pg_data_database):
    pg_data_database.execute(
        "drop schema if exists fixture_check cascade",
        "create schema fixture_check",
        "create table fixture_check.items (id int)",
        "insert into fixture_check.items values (1), (2)",
        "drop table if exists fixture_public_items",
        "create table fixture_public_items (id int)",
    )
    try:
        with psycopg.connect(reader_dsn(pg_data_database), autocommit=True) as conn:
            assert conn.execute("select current_user").fetchone()[0] == pg_data_database.username
            assert conn.execute("select count(*) from fixture_check.items").fetchone()[0] == 2
            assert conn.execute("select count(*) from fixture_public_items").fetchone()[0] == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("create table public.reader_made (id int)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("insert into fixture_public_items values (1)")
    finally:
        pg_data_database.execute("drop schema fixture_check cascade", "drop table fixture_public_items")


def test_the_mysql_reader_may_only_select_on_its_database(mysql_reader):
    with mysql_admin() as conn, conn.cursor() as cursor:
        for host in ("%", "localhost"):
            cursor.execute(
                "SELECT File_priv, Super_priv, Select_priv FROM mysql.user WHERE User = %s AND Host = %s",
                (mysql_reader.username, host),
            )
            assert cursor.fetchone() == ("N", "N", "N")
        cursor.execute(f"CREATE TABLE IF NOT EXISTS `{mysql_reader.database}`.fixture_check (id int)")
    try:
        with (
            pymysql.connect(
                host=mysql_reader.host,
                port=mysql_reader.port,
                user=mysql_reader.username,
                password=mysql_reader.password.encode(),
                database=mysql_reader.database,
                connect_timeout=5,
            ) as conn,
            conn.cursor() as cursor,
        ):
            cursor.execute("SELECT count(*) FROM fixture_check")
            assert cursor.fetchone() == (0,)
            with pytest.raises(pymysql.err.MySQLError, match="denied"):
                cursor.execute("INSERT INTO fixture_check VALUES (1)")
    finally:
        with mysql_admin(mysql_reader.database) as conn, conn.cursor() as cursor:
            cursor.execute("DROP TABLE fixture_check")
