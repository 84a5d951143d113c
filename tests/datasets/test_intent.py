import http.server
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest

from leanml.datasets import fetch_clinc150, find_clinc150, load_intent
from leanml.datasets.intent import load_email_intents
from leanml.errors import DatasetError, DatasetNotFoundError, ParameterError


def test_clinc150_official_split(settings, data_dir):
    ds = load_intent(source="clinc150", settings=settings.replace(data_dir=data_dir))
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (15000, 3000, 4500)
    assert len(ds.classes) == 150
    assert "CC BY 3.0" in ds.license and "Larson" in ds.citation


def test_resolution_order_explicit_then_data_dir_then_cache(settings, data_dir, tmp_path):
    source = data_dir / "clinc150" / "data_full.json"
    cached = settings.cache_dir / "clinc150" / "data_full.json"
    cached.parent.mkdir(parents=True)
    shutil.copy(source, cached)
    assert find_clinc150(settings=settings) == cached
    with_dir = settings.replace(data_dir=data_dir)
    assert find_clinc150(settings=with_dir) == source
    assert find_clinc150(cached, settings=with_dir) == cached


def test_not_found_names_every_option(settings):
    with pytest.raises(DatasetNotFoundError) as info:
        find_clinc150(settings=settings)
    message = str(info.value)
    assert "LEANML_DATA_DIR" in message and "leanml datasets fetch clinc150" in message
    assert str(settings.cache_dir) in message


def test_auto_falls_back_to_bundled_intents_and_says_so(settings):
    ds = load_intent(settings=settings)
    assert ds.name == "email-intents"
    assert "CLINC150 unavailable" in ds.notes


def test_bundled_intents_are_rich_enough():
    ds = load_email_intents()
    counts = Counter(ds.y_train.tolist() + ds.y_val.tolist() + ds.y_test.tolist())
    assert len(counts) >= 15
    assert min(counts.values()) >= 40
    everything = ds.X_train + ds.X_val + ds.X_test
    assert len(set(everything)) == len(everything)


def test_unknown_source():
    with pytest.raises(ParameterError, match="'source' parameter of load_intent"):
        load_intent(source="web")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture()
def file_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args, **kwargs):
        return _Quiet(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_checks_sha256_and_caches(settings, data_dir, file_server):
    root, base = file_server
    shutil.copy(data_dir / "clinc150" / "data_full.json", root / "data_full.json")
    path = fetch_clinc150(settings=settings, url=f"{base}/data_full.json")
    assert path == settings.cache_dir / "clinc150" / "data_full.json"
    assert (path.parent / "ATTRIBUTION.txt").read_text().startswith('"An Evaluation Dataset')


def test_download_with_wrong_checksum_is_not_saved(settings, file_server):
    root, base = file_server
    (root / "data_full.json").write_text('{"train": []}')
    with pytest.raises(DatasetError, match="sha256"):
        fetch_clinc150(settings=settings, url=f"{base}/data_full.json")
    assert not (settings.cache_dir / "clinc150" / "data_full.json").exists()


def test_download_failure_is_a_clear_not_found(settings, file_server):
    _, base = file_server
    with pytest.raises(DatasetNotFoundError, match="Downloading CLINC150"):
        fetch_clinc150(settings=settings, url=f"{base}/missing.json")


def test_explicit_missing_path(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        find_clinc150(tmp_path / "x.json")
