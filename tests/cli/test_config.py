"""``leanml config show``: effective settings, their sources, masked secrets."""

import json

from leanml.cli import main


def test_config_show_json_names_sources_and_masks_the_token(tmp_path, monkeypatch, capsys):
    file = tmp_path / "leanml.toml"
    file.write_text("[serving]\nmax_inputs = 12\n")
    monkeypatch.setenv("LEANML_ADMIN_TOKEN", "very-secret")
    monkeypatch.setenv("LEANML_MONITOR_SAMPLING_RATE", "0.5")
    assert main(["--config", str(file), "config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out
    shown = json.loads(out)
    assert shown["serving"]["max_inputs"] == {"value": 12, "source": f"file {file} line 2"}
    assert shown["monitor"]["sampling_rate"]["value"] == 0.5
    assert shown["monitor"]["sampling_rate"]["source"] == (
        "environment variable LEANML_MONITOR_SAMPLING_RATE"
    )
    assert shown["serving"]["admin_token"]["value"] == "****"
    assert shown["leanml"]["store_url"]["source"] == "default"


def test_config_show_table(monkeypatch, capsys):
    monkeypatch.setenv("LEANML_ADMIN_TOKEN", "very-secret")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out and "****" in out and "sampling_rate" in out


def test_config_show_refuses_a_bad_file(tmp_path, capsys):
    file = tmp_path / "leanml.toml"
    file.write_text("[monitor]\nsampling_rat = 0.5\n")
    assert main(["--config", str(file), "config", "show"]) == 2
    err = capsys.readouterr().err
    assert "sampling_rat" in err and "did you mean 'sampling_rate'" in err and "line 2" in err
