import pytest

from shared.config import ConfigError, load_settings
from tests.support import base_env


def test_valid_environment_gives_frozen_settings():
    settings = load_settings(base_env())
    assert settings.artifact_store == "database"
    with pytest.raises(AttributeError):
        settings.pdf_max_rows = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("BIAPP_SECRET_KEY", "short", "BIAPP_SECRET_KEY must be at least 32 characters"),
        ("BIAPP_FERNET_KEYS", "not-a-key", "BIAPP_FERNET_KEYS key 1 is not a valid Fernet key"),
        ("BIAPP_DATABASE_URL", "mysql://x/y", "BIAPP_DATABASE_URL must be"),
        ("BIAPP_BROKER_URL", "redis://localhost", "BIAPP_BROKER_URL must be"),
        ("BIAPP_PDF_MAX_ROWS", "lots", "BIAPP_PDF_MAX_ROWS must be an integer"),
        ("BIAPP_PDF_MAX_ROWS", "0", "BIAPP_PDF_MAX_ROWS must be between"),
        ("BIAPP_ALLOW_SIGNUP", "maybe", "BIAPP_ALLOW_SIGNUP must be true or false"),
        ("BIAPP_LOG_FORMAT", "xml", "BIAPP_LOG_FORMAT must be one of json, text"),
        ("BIAPP_ARTIFACT_STORE", "s3:bucket", "BIAPP_ARTIFACT_STORE must be"),
        ("BIAPP_PUBLIC_URL", "example.com", "BIAPP_PUBLIC_URL must be an absolute"),
        ("BIAPP_API_WORKERS", "many", "BIAPP_API_WORKERS must be an integer"),
        ("BIAPP_API_WORKERS", "-1", "BIAPP_API_WORKERS must be between 0 and 64"),
    ],
)
def test_invalid_setting_is_one_clear_line_naming_it(name, value, fragment):
    with pytest.raises(ConfigError) as error:
        load_settings(base_env(**{name: value}))
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["BIAPP_DATABASE_URL", "BIAPP_BROKER_URL", "BIAPP_SECRET_KEY", "BIAPP_FERNET_KEYS"])
def test_missing_required_setting_is_named(name):
    env = base_env()
    del env[name]
    with pytest.raises(ConfigError, match=f"{name} is required"):
        load_settings(env)


def test_bare_postgresql_url_means_psycopg3():
    settings = load_settings(base_env(BIAPP_DATABASE_URL="postgresql://u@h/db"))
    assert settings.database_url == "postgresql+psycopg://u@h/db"


def test_broker_url_gets_a_heartbeat():
    settings = load_settings(base_env(BIAPP_BROKER_URL="amqp://guest:guest@localhost:5672/%2F"))
    assert settings.broker_url.endswith("?heartbeat=60")


def test_several_fernet_keys_are_kept_newest_first():
    from cryptography.fernet import Fernet

    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = load_settings(base_env(BIAPP_FERNET_KEYS=f"{new}, {old}"))
    assert settings.fernet_keys == (new, old)
