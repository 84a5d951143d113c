from __future__ import annotations

import os
import uuid

import pytest


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get("LEANML_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("LEANML_TEST_POSTGRES_URL is not set (PostgreSQL tests need a server)")
    return url


@pytest.fixture
def table_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"
