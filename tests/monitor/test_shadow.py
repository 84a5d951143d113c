"""The shadow check's store side: every process's counts merged per epoch, the figures with their
Wilson intervals, the decision and its clearing, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from leanml._intervals import wilson
from leanml.monitor import MonitorStore
from leanml.monitor.shadow import (
    clear_fallback,
    default_threshold,
    read_decision,
    shadow_figures,
    shadow_tables,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shadow.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(url: str, table_prefix: str) -> Iterator[MonitorStore]:
    st = MonitorStore(url, table_prefix=table_prefix, process_id="reader")
    try:
        yield st
    finally:
        counts, state = shadow_tables(st)
        with st.engine.begin() as conn:  # a shared PostgreSQL keeps no test's tables
            state.drop(conn, checkfirst=True)
            counts.drop(conn, checkfirst=True)
        st.drop_all()
        st.close()


def _publish(store: MonitorStore, process: str, version: str, epoch: int, **counts: float) -> None:
    """One process's counts row, as the guard writes it."""
    table, _ = shadow_tables(store)
    row = dict.fromkeys(("n", "agree", "diff_sum", "joined", "correct_compact"), 0)
    row |= {"correct_original": 0, **counts}
    with store.engine.begin() as conn:
        conn.execute(
            table.insert().values(
                model="intent",
                version=version,
                epoch=epoch,
                process=process,
                updated_at=time.time(),
                **row,
            )
        )


def _state(store: MonitorStore, version: str, **values: object) -> None:
    _, state = shadow_tables(store)
    row = {"epoch": 0, "fallen_back": 0, "reason": None, "figures": None, **values}
    with store.engine.begin() as conn:
        conn.execute(state.insert().values(model="intent", version=version, ts=1.0, **row))


def test_no_shadow_table_or_no_row_reads_as_none(store: MonitorStore) -> None:
    assert read_decision(store, "intent", 3) is None  # the tables do not exist yet
    assert not sa.inspect(store.engine).has_table(f"{store.prefix}shadow_state")
    _state(store, "2")
    assert read_decision(store, "intent", 3) is None  # another version's row only
    assert read_decision(store, "other", 2) is None


def test_every_process_counts_of_the_epoch_are_summed_with_wilson_intervals(
    store: MonitorStore,
) -> None:
    _state(store, "3", figures=json.dumps({"threshold": 0.97}))
    _publish(store, "host-a:1", "3", 0, n=3000, agree=2970, diff_sum=30.0, joined=400,
             correct_compact=350, correct_original=356)  # fmt: skip
    _publish(store, "host-b:7", "3", 0, n=1210, agree=1185, diff_sum=12.1, joined=100,
             correct_compact=88, correct_original=90)  # fmt: skip
    _publish(store, "host-a:1", "3", 1, n=999, agree=0)  # a later epoch: not this one
    _publish(store, "host-a:1", "2", 0, n=999, agree=0)  # another version
    got = read_decision(store, "intent", 3)
    assert got is not None
    assert got["shadowed"] == 4210 and got["joined"] == 500
    assert got["agreement"] == pytest.approx(4155 / 4210)
    lo, hi = wilson(4155, 4210)
    assert (got["agreement_lower"], got["agreement_upper"]) == pytest.approx((lo, hi))
    assert got["agreement_lower"] < got["agreement"] < got["agreement_upper"]
    assert got["proba_diff_mean"] == pytest.approx(42.1 / 4210)
    assert got["accuracy_compact"] == pytest.approx(438 / 500)
    assert got["accuracy_original"] == pytest.approx(446 / 500)
    assert got["accuracy_original_lower"] == pytest.approx(wilson(446, 500)[0])
    assert got["threshold"] == 0.97
    assert got["fallen_back"] is False and got["reason"] is None and got["epoch"] == 0


def test_a_fallback_reads_with_its_reason_and_clearing_starts_a_fresh_epoch(
    store: MonitorStore,
) -> None:
    reason = "live agreement 0.512 [0.480, 0.544] < 0.97 over 900 shadowed predictions"
    _state(store, "1", fallen_back=1, reason=reason)
    _publish(store, "w1", "1", 0, n=900, agree=461)
    got = read_decision(store, "intent", "1")
    assert got is not None and got["fallen_back"] is True and got["reason"] == reason
    assert got["shadowed"] == 900 and got["threshold"] is None  # not published: unknown
    assert clear_fallback(store, "intent", 1) is True
    fresh = read_decision(store, "intent", 1)
    assert fresh is not None and fresh["epoch"] == 1 and fresh["fallen_back"] is False
    assert fresh["reason"] is None and fresh["shadowed"] == 0 and fresh["agreement"] is None
    assert fresh["agreement_lower"] is None and fresh["accuracy_compact"] is None
    assert clear_fallback(store, "intent", 5) is False  # no such version
    assert clear_fallback(None, "intent", 1) is False  # no store


def test_figures_without_data_are_none_and_the_default_threshold() -> None:
    empty = shadow_figures(dict.fromkeys(
        ("n", "agree", "diff_sum", "joined", "correct_compact", "correct_original"), 0.0
    ))  # fmt: skip
    assert empty["shadowed"] == 0 and empty["agreement"] is None
    assert empty["proba_diff_mean"] is None and empty["accuracy_original_upper"] is None
    assert default_threshold(None, {"min_agreement": 0.995}) == pytest.approx(0.975)
    assert default_threshold(None, None) == pytest.approx(0.97)
    assert default_threshold(0.9, {"min_agreement": 0.995}) == 0.9


def test_with_fallback_off_a_fired_test_reads_as_an_alarm_not_a_fallback(
    store: MonitorStore,
) -> None:
    figures = json.dumps({"threshold": 0.97, "fallback": "off"})
    _state(store, "1", fallen_back=1, reason="live agreement 0.5 < 0.97", figures=figures)
    got = read_decision(store, "intent", "1")
    assert got is not None and got["alarm"] is True and got["fallen_back"] is False
    assert got["fallback"] == "off" and got["threshold"] == 0.97
