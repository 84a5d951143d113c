from pathlib import Path

import pytest

from leanml.config import Settings
from leanml.errors import ConfigError


def test_defaults_then_file_then_environment(tmp_path: Path) -> None:
    file = tmp_path / "leanml.toml"
    file.write_text('[leanml]\nsampling_rate = 0.5\nmodels_dir = "from-file"\n')
    settings = Settings.load(file, env={"LEANML_MODELS_DIR": "from-env"})
    assert settings.sampling_rate == 0.5  # file beats default
    assert settings.models_dir == Path("from-env")  # environment beats file
    assert settings.store_url.startswith("sqlite:///")  # default kept


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("allow_download = false\n")
    assert Settings.load(env={"LEANML_CONFIG": str(file)}).allow_download is False


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"LEANML_SAMPLING_RATE": "1.5"}, "'sampling_rate' from environment variable"),
        ({"LEANML_SAMPLING_RATE": "lots"}, "must be a number, got 'lots'"),
        ({"LEANML_ALLOW_DOWNLOAD": "perhaps"}, "must be a boolean"),
        ({"LEANML_DOWNLOAD_TIMEOUT_S": "-1"}, "positive number of seconds"),
    ],
)
def test_bad_values_name_key_source_and_value(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.load(env=env)


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("sampling_rat = 0.1\n")
    with pytest.raises(ConfigError, match="Unknown setting 'sampling_rat'"):
        Settings.load(file, env={})


def test_missing_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("= broken")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(bad, env={})
