"""The aggregator's tests: `cloud_db_url` and `pg_server` come from tests/conftest.py (SQLite and PostgreSQL)."""
