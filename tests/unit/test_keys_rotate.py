"""`biapp keys rotate`: every stored secret re-encrypted with the newest key; old keys keep working until removed."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken

from services.cli import main
from shared.db import make_engine, make_session_factory, transaction
from shared.models import DataSource, Destination, EmailConfig, SavedQuery, ScheduledReport, User
from shared.security.crypto import SecretBox
from tests.support import base_env

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
LOST = Fernet.generate_key().decode()


@pytest.fixture
def stored(sqlite_url):
    factory = make_session_factory(make_engine(sqlite_url))
    old = SecretBox((OLD,))
    with transaction(factory) as session:
        session.add(
            EmailConfig(
                host="smtp.example.com",
                port=587,
                from_address="r@example.com",
                is_system_default=True,
                password_encrypted=old.encrypt("smtp-secret"),
            )
        )
        session.add(DataSource(name="Sales", kind="postgresql", password_encrypted=old.encrypt("db-secret")))
        session.add(DataSource(name="NoPassword", kind="sqlite", path="x.db"))
        owner = User(email="o@example.com", password_hash="x", role="analyst")
        session.add(owner)
        session.flush()
        query = SavedQuery(name="q", kind="sql", sql="select 1", owner_id=owner.id)
        session.add(query)
        session.flush()
        report = ScheduledReport(
            owner_id=owner.id, name="r", saved_query_id=query.id, schedule={"frequency": "daily"}, formats=["csv"]
        )
        report.destinations = [
            Destination(kind="webhook", target="hooks.example.com", secret_encrypted=old.encrypt("hook-secret"))
        ]
        session.add(report)
    return sqlite_url, factory


def _tokens(factory) -> list[str]:
    with transaction(factory) as session:
        rows = [*session.query(EmailConfig).all(), *session.query(DataSource).all()]
        tokens = [r.password_encrypted for r in rows if r.password_encrypted]
        return tokens + [d.secret_encrypted for d in session.query(Destination).all()]


def _run(monkeypatch, url: str, keys: str) -> int:
    for name, value in base_env(BIAPP_DATABASE_URL=url, BIAPP_FERNET_KEYS=keys).items():
        monkeypatch.setenv(name, value)
    return main(["keys", "rotate"])


def test_old_key_still_opens_secrets_before_rotation():
    token = SecretBox((OLD,)).encrypt("smtp-secret")
    assert SecretBox((NEW, OLD)).decrypt(token) == "smtp-secret"


def test_rotate_re_encrypts_every_secret_with_the_newest_key(stored, monkeypatch, capsys):
    url, factory = stored
    assert _run(monkeypatch, url, f"{NEW},{OLD}") == 0
    assert "re-encrypted 3 secrets" in capsys.readouterr().out
    tokens = _tokens(factory)
    assert sorted(SecretBox((NEW,)).decrypt(t) for t in tokens) == ["db-secret", "hook-secret", "smtp-secret"]
    for token in tokens:
        with pytest.raises(InvalidToken):
            Fernet(OLD.encode()).decrypt(token.encode())


def test_a_secret_no_key_opens_is_reported_and_left_alone_while_others_rotate(stored, monkeypatch, capsys):
    url, factory = stored
    with transaction(factory) as session:
        session.add(DataSource(name="Orphan", kind="postgresql", password_encrypted=SecretBox((LOST,)).encrypt("x")))
    assert _run(monkeypatch, url, f"{NEW},{OLD}") == 1
    output = capsys.readouterr()
    assert "re-encrypted 3 secrets" in output.out
    assert "cannot decrypt with any key" in output.err and "data source" in output.err
    readable = []
    for token in _tokens(factory):
        try:
            readable.append(SecretBox((NEW,)).decrypt(token))
        except Exception:
            readable.append(None)
    assert sorted(r for r in readable if r) == ["db-secret", "hook-secret", "smtp-secret"]
    assert readable.count(None) == 1
