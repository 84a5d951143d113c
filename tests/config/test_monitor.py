"""The [monitor] section's alert rules: validation messages and the default set."""

import pytest

from leanml.config import AlertRule, default_rules
from leanml.errors import ParameterError


def test_rule_validation_messages() -> None:
    with pytest.raises(ParameterError, match="The 'direction' parameter of AlertRule"):
        AlertRule("x", "m", "sideways", warning=1)
    with pytest.raises(ParameterError, match="'critical' parameter of AlertRule"):
        AlertRule("x", "m", "below", warning=0.8, critical=0.9)
    with pytest.raises(ParameterError):
        AlertRule("x", "m")
    assert len({r.name for r in default_rules()}) == len(default_rules())


def test_levels_follow_hysteresis() -> None:
    rule = AlertRule("p99", "latency_p99_s", "above", warning=0.1, critical=0.5, hysteresis=0.02)
    assert rule.level_for(0.2, "ok") == "warning"
    assert rule.level_for(0.09, "warning") == "warning"  # within the hysteresis margin
    assert rule.level_for(0.07, "warning") == "ok"
    assert rule.level_for(0.6, "ok") == "critical"
