"""Real services for the tests: PostgreSQL, an S3-compatible HTTP server, Azurite and a Ray cluster.

Each fixture skips on a developer's machine that lacks the service, and fails under CI=true.
"""

import os


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where every service must be there."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required test service unavailable in CI: {reason}")
    pytest.skip(reason)
