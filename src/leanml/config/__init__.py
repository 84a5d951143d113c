"""leanml's settings: one object with sections, one loader, one precedence.

:class:`Settings` holds the core settings and the :class:`ServingConfig` (``[serving]``) and
:class:`MonitorConfig` (``[monitor]``) sections; :meth:`Settings.load` reads defaults < a TOML
file < ``LEANML_*`` environment variables < arguments (see :mod:`leanml.config.settings`).
"""

from __future__ import annotations

from leanml.config._load import Source, load_toml, parse_bool
from leanml.config.monitor import LEVELS, AlertRule, MonitorConfig, default_rules
from leanml.config.serving import ServingConfig
from leanml.config.settings import SECTIONS, SettingRow, Settings, markdown_table

__all__ = [
    "LEVELS",
    "SECTIONS",
    "AlertRule",
    "MonitorConfig",
    "ServingConfig",
    "SettingRow",
    "Settings",
    "Source",
    "default_rules",
    "load_toml",
    "markdown_table",
    "parse_bool",
]
