"""The registry's served-version and variant choices, shared through the monitor store.

``leanml serve`` hosts that share one store (PostgreSQL) each have their own models directory;
a variant switch or promotion made through one host's admin API is written to the
``<prefix>registry_state`` table (and that host's ``state.json``), and every host's registry
watcher reads the newer of the two (see :attr:`leanml.registry.ModelRegistry.shared_state`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

__all__ = ["SharedRegistryState"]


class SharedRegistryState:
    """One row per model name: the registry state as JSON (thread- and process-safe)."""

    def __init__(self, engine: sa.engine.Engine, prefix: str = "") -> None:
        self.engine = engine
        md = sa.MetaData()
        self.table = sa.Table(
            f"{prefix}registry_state",
            md,
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("state", sa.Text, nullable=False),
        )
        with contextlib.suppress(sa.exc.IntegrityError, sa.exc.ProgrammingError):
            md.create_all(engine, checkfirst=True)  # two hosts may race to create it

    def read(self, name: str) -> dict[str, Any] | None:
        t = self.table
        with self.engine.connect() as conn:
            raw = conn.execute(sa.select(t.c.state).where(t.c.name == name)).scalar()
        return _parse(raw)

    @contextlib.contextmanager
    def transaction(
        self, name: str
    ) -> Iterator[tuple[dict[str, Any] | None, Callable[[dict[str, Any]], None]]]:
        """The current state of ``name`` locked (row lock on PostgreSQL) until the block ends,
        and ``save(state)`` to write it in the same transaction."""
        t = self.table
        with contextlib.suppress(sa.exc.IntegrityError), self.engine.begin() as conn:
            exists = conn.execute(sa.select(t.c.name).where(t.c.name == name)).first()
            if exists is None:
                conn.execute(t.insert().values(name=name, state="null"))
        with self.engine.begin() as conn:
            raw = conn.execute(
                sa.select(t.c.state).where(t.c.name == name).with_for_update()
            ).scalar()

            def save(state: dict[str, Any]) -> None:
                conn.execute(t.update().where(t.c.name == name).values(state=json.dumps(state)))

            yield _parse(raw), save


def _parse(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) else None
