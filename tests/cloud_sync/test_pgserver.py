"""The throwaway PostgreSQL server the aggregator's tests run on."""

import pytest
import sqlalchemy as sa


@pytest.mark.postgres
def test_a_fresh_database_per_call_on_the_test_server(cloud_db_url: str) -> None:
    engine = sa.create_engine(cloud_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert conn.execute(sa.text("SELECT SUM(x) FROM t")).scalar() == 1
    engine.dispose()
