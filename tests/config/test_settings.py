"""The one settings object: every source, the precedence for every section, errors, masking."""

import json
import re
from pathlib import Path

import pytest

from leanml.config import AlertRule, Settings, markdown_table
from leanml.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_then_file_then_environment_then_arguments(tmp_path: Path) -> None:
    file = tmp_path / "leanml.toml"
    file.write_text(
        'models_dir = "from-file"\nstore_url = "sqlite:///file.db"\n'
        "[serving]\nmax_inputs = 7\nwarmup = 3\n"
        "[monitor]\nsampling_rate = 0.5\nwindow_s = 30\n"
    )
    env = {
        "LEANML_MODELS_DIR": "from-env",
        "LEANML_SERVING_MAX_INPUTS": "9",
        "LEANML_MONITOR_SAMPLING_RATE": "0.25",
    }
    s = Settings.load(file, env=env, overrides={"serving.warmup": 1, "monitor.window_s": None})
    # core section
    assert s.models_dir == Path("from-env")  # environment beats file
    assert s.store_url == "sqlite:///file.db"  # file beats default
    assert s.allow_download is True  # default kept
    # serving section
    assert s.serving.max_inputs == 9  # environment beats file
    assert s.serving.warmup == 1  # argument beats file
    assert s.serving.max_body_bytes == 1_048_576  # default
    # monitor section
    assert s.monitor.sampling_rate == 0.25  # environment beats file
    assert s.monitor.window_s == 30.0  # file kept: a None argument is "not given"
    assert str(s.sources["models_dir"]) == "environment variable LEANML_MODELS_DIR"
    assert str(s.sources["store_url"]) == f"file {file} line 2"
    assert str(s.sources["serving.warmup"]) == "argument"
    assert str(s.sources["monitor.window_s"]) == f"file {file} line 8"
    assert str(s.sources["monitor.flush_interval_s"]) == "default"


def test_core_keys_under_a_leanml_table(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[leanml]\nmodels_dir = "m"\nallow_download = false\n')
    s = Settings.load(file, env={})
    assert s.models_dir == Path("m") and s.allow_download is False


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("allow_download = false\n[monitor]\nstore_inputs = 'none'\n")
    s = Settings.load(env={"LEANML_CONFIG": str(file)})
    assert s.allow_download is False and s.monitor.store_inputs == "none"


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        (
            {"LEANML_MONITOR_SAMPLING_RATE": "1.5"},
            [
                "'[monitor] sampling_rate'",
                "environment variable LEANML_MONITOR_SAMPLING_RATE",
                "1.5",
            ],
        ),
        ({"LEANML_MONITOR_SAMPLING_RATE": "lots"}, ["must be a number, got 'lots'"]),
        ({"LEANML_ALLOW_DOWNLOAD": "perhaps"}, ["'allow_download'", "must be a boolean"]),
        ({"LEANML_DOWNLOAD_TIMEOUT_S": "-1"}, ["'download_timeout_s'", "-1"]),
        ({"LEANML_SERVING_MAX_INPUTS": "2.5"}, ["[serving] max_inputs", "an integer", "'2.5'"]),
        ({"LEANML_SERVING_VARIANT": "tiny"}, ["[serving] variant", "'tiny'", "'compact'"]),
        ({"LEANML_MONITOR_STORE_INPUTS": "all"}, ["[monitor] store_inputs", "'all'"]),
    ],
)
def test_bad_environment_values_name_key_source_and_value(
    env: dict[str, str], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load(env=env)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_bad_file_value_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('# comment\n[serving]\nmax_inputs = 4\ncache_normalize = "upper"\n')
    with pytest.raises(ConfigError) as err:
        Settings.load(file, env={})
    message = str(err.value)
    assert f"{file} line 4" in message and "'upper'" in message and "cache_normalize" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sampling_rat = 0.1\n", "did you mean [monitor] sampling_rate?"),
        ("models_dri = 'x'\n", "Unknown setting 'models_dri'"),
        ("[serving]\nmax_input = 3\n", "did you mean 'max_inputs'?"),
        ("[monitor]\nsampling_rat = 0.3\n", "did you mean 'sampling_rate'?"),
        ("[serving]\nsampling_rate = 0.3\n", "did you mean [monitor] sampling_rate?"),
        ("[servng]\nmax_inputs = 3\n", "did you mean 'serving'?"),
    ],
)
def test_unknown_keys_name_the_nearest_known_one(tmp_path: Path, text: str, fragment: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as err:
        Settings.load(file, env={})
    assert fragment in str(err.value)
    assert str(file) in str(err.value)


def test_unknown_key_line_is_named(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[serving]\nmax_inputs = 3\n\nmax_inputz = 4\n")
    with pytest.raises(ConfigError, match=r"line 4"):
        Settings.load(file, env={})


def test_missing_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("= broken")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(bad, env={})


def test_alert_rules_from_file_tables(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        "[[monitor.alert_rules]]\nname = 'p99'\nmetric = 'latency_p99_s'\nwarning = 0.2\n"
    )
    rules = Settings.load(file, env={}).monitor.alert_rules
    assert rules == (AlertRule("p99", "latency_p99_s", warning=0.2),)
    file.write_text("[[monitor.alert_rules]]\nname = 'p99'\nmetric = 'x'\n")
    with pytest.raises(ConfigError, match="alert_rules"):
        Settings.load(file, env={})


def test_admin_token_is_a_masked_secret(tmp_path: Path) -> None:
    s = Settings.load(env={"LEANML_ADMIN_TOKEN": "s3cret-token"})
    assert s.serving.admin_token == "s3cret-token"
    assert str(s.sources["serving.admin_token"]) == "environment variable LEANML_ADMIN_TOKEN"
    shown = json.dumps(s.to_json())
    assert "s3cret-token" not in shown
    assert s.to_json()["serving"]["admin_token"]["value"] == "****"
    assert "s3cret-token" not in repr(s) or "admin_token" in repr(s)  # repr is the dataclass's
    assert "s3cret-token" not in json.dumps(s.serving.to_dict())
    # the section's own variable wins over the alias
    both = {"LEANML_ADMIN_TOKEN": "a", "LEANML_SERVING_ADMIN_TOKEN": "b"}
    assert Settings.load(env=both).serving.admin_token == "b"
    assert Settings.load(env={}).to_json()["serving"]["admin_token"]["value"] is None


def test_with_overrides_keeps_sources(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[monitor]\nwindow_s = 30\n")
    s = Settings.load(file, env={}).with_overrides({"store_url": "sqlite:///x.db"})
    assert s.store_url == "sqlite:///x.db" and s.monitor.window_s == 30.0
    assert str(s.sources["store_url"]) == "argument"
    assert str(s.sources["monitor.window_s"]).startswith("file ")
    assert s.replace(models_dir="y").models_dir == Path("y")
    with pytest.raises(ConfigError, match="Unknown settings section 'nope'"):
        s.with_overrides({"nope.x": 1})


def test_readme_configuration_table_matches_the_settings_object() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", text, re.S
    )
    assert match, "README has no generated settings table (settings-table markers)"
    assert match.group(1) == markdown_table(), (
        "README's Configuration table is stale: regenerate it with `leanml config show --markdown`"
    )


def test_list_settings_from_file_and_environment(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[serving]\nmodels = ["a", "b"]\nmonitoring = false\n')
    s = Settings.load(file, env={})
    assert s.serving.models == ("a", "b") and s.serving.monitoring is False
    s = Settings.load(
        file, env={"LEANML_SERVING_MODELS": "x, y", "LEANML_SERVING_MONITORING": "on"}
    )
    assert s.serving.models == ("x", "y") and s.serving.monitoring is True


def test_serving_profile_applies_only_where_the_user_left_the_default(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[monitor]\nflush_interval_s = 0.7\n")
    s = Settings.load(file, env={}).with_profile(
        "leanml serve", {"monitor.flush_interval_s": 0.1, "monitor.alert_interval_s": 5.0}
    )
    assert s.monitor.flush_interval_s == 0.7  # the user's value wins
    assert s.monitor.alert_interval_s == 5.0
    assert str(s.sources["monitor.alert_interval_s"]) == "profile leanml serve"
    assert str(s.sources["monitor.flush_interval_s"]).startswith("file ")


@pytest.mark.parametrize(
    ("var", "new"),
    [
        ("LEANML_SAMPLING_RATE", "LEANML_MONITOR_SAMPLING_RATE"),
        ("LEANML_SERVE_MAX_INPUTS", "LEANML_SERVING_MAX_INPUTS"),
    ],
)
def test_renamed_variables_are_refused_with_their_new_name(var: str, new: str) -> None:
    with pytest.raises(ConfigError, match=f"{var} is no longer read; set {new} instead"):
        Settings.load(env={var: "1"})
    assert Settings.load(env={"LEANML_SERVE_SPEC": "{}"}).serving.max_inputs == 256
