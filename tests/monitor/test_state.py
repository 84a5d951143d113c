from __future__ import annotations

import numpy as np

from leanml.groundtruth import GroundTruth
from leanml.monitor import ModelMonitor, MonitorConfig
from leanml.monitor._state import OTHER


def test_label_indices_share_one_other_index_beyond_max_labels(clock) -> None:
    m = ModelMonitor("m", clock=clock, start=False, sinks=[], config=MonitorConfig(max_labels=2))
    st = m.state
    idx = st.label_indices(["a", "b", "c", "a", "d", np.str_("b")])
    assert idx.tolist() == [0, 1, 2, 0, 2, 1]
    assert st.labels == ["a", "b", OTHER]
    assert st.drops["labels_overflow"] == 2
    m.close()


def test_public_attributes_read_and_write_the_state(clock) -> None:
    m = ModelMonitor("m", clock=clock, start=False, sinks=[])
    m.record("p", "a", 0.9, 0.01)
    m.flush()
    assert m.total == m.state.total == 1
    gt = GroundTruth(10, clock=clock)
    gt.issue(3)
    m.ground_truth = gt
    assert m.state.ground_truth is gt and m.stats()["ground_truth"]["pending"] == 3
    cfg = m.configure(metrics_window_n=5)
    assert m.state.config is cfg and m.count_window is m.state.count_window
    assert m.count_window.size == 5
    m.close()


def test_fresh_state_keeps_settings_and_counts_nothing(clock) -> None:
    m = ModelMonitor("m", version="1", clock=clock, start=False, sinks=[])
    m.record("p", "a", 0.9, 0.01)
    m.flush()
    m.ground_truth, m.ground_truth_code = GroundTruth(10), 2
    new = m.state.fresh("child")
    assert (new.name, new.version, new.process_id) == ("m", "1", "child")
    assert new.config is m.config and new.alerts is m.alerts
    assert new.ground_truth is m.ground_truth and new.ground_truth_code == 2
    assert new.total == 0 and not new.windows and new.labels == []
    m.close()
