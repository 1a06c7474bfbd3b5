"""PostgreSQL for the tests (filled in by the Postgres connector work)."""
