#!/usr/bin/env bash
# Regenerates the initial migration from the models (only while no release has shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
DB=biapp_migration_gen_$$
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $DB" -qc "CREATE DATABASE $DB"
rm -f shared/db/migrations/versions/0001_initial.py
.venv/bin/python - <<PY
from alembic import command
from shared.db.migrate import alembic_config
cfg = alembic_config("postgresql+psycopg://postgres@127.0.0.1:5432/$DB")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
PY
mv shared/db/migrations/versions/0001_*.py shared/db/migrations/versions/0001_initial.py
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $DB"
.venv/bin/ruff format -q shared/db/migrations/versions/0001_initial.py
.venv/bin/ruff check -q --fix shared/db/migrations/versions/0001_initial.py >/dev/null || true
