"""Three ``leanml serve`` hosts (2 workers each) behind nginx, one PostgreSQL store, a real
Prometheus (issue #21).

Each host runs in a network namespace the test creates (a veth pair per host, enslaved to a
bridge in the root namespace, addresses in 10.213.77.0/24); without permission for namespaces
the hosts bind distinct loopback addresses instead (the network part is then skipped, see
``_network``). Every host has its *own* copy of the models directory, so a variant switch can
only reach the other hosts through the shared store. PostgreSQL listens on 127.0.0.1 only, so
hosts reach it through its Unix socket (not network-namespaced). Everything (processes,
namespaces, the bridge, the database) is removed in ``finally`` blocks.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.serving.conftest import ADMIN_TOKEN, CONFIG, make_registry

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

NAME = "intent"
PORT = 8000
NGINX = "/usr/sbin/nginx"
PROMETHEUS = "/usr/bin/prometheus"
SUBNET = "10.213.77"  # the addresses of deploy/nginx.conf and deploy/prometheus.yml
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRICS_PORT = 9100  # each worker's own /metrics: 9100 and 9101 on every host


def _host_config(addr: str) -> str:
    return CONFIG.replace(
        "[serving]\n",
        f'[serving]\nworker_metrics_port = {METRICS_PORT}\nworker_metrics_host = "{addr}"\n',
    )


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


class Network:
    """Namespaces + veth pairs + a bridge, or distinct loopback addresses."""

    def __init__(self, tag: str, n: int) -> None:
        self.tag, self.n = tag, n
        self.namespaces: list[str] = []
        self.bridge = f"lmb{tag}"
        self.skip_reason: str | None = None
        self.addresses: list[str] = []

    def create(self) -> None:
        try:
            _sh("ip", "link", "add", self.bridge, "type", "bridge")
            _sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", self.bridge)
            _sh("ip", "link", "set", self.bridge, "up")
            for i in range(self.n):
                ns, root_if, ns_if = f"lmc{self.tag}{i}", f"lmv{self.tag}{i}", f"lmp{self.tag}{i}"
                _sh("ip", "netns", "add", ns)
                self.namespaces.append(ns)
                _sh("ip", "link", "add", root_if, "type", "veth", "peer", "name", ns_if)
                _sh("ip", "link", "set", root_if, "master", self.bridge)
                _sh("ip", "link", "set", root_if, "up")
                _sh("ip", "link", "set", ns_if, "netns", ns)
                addr = f"{SUBNET}.{11 + i}"
                _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ns_if)
                _sh("ip", "-n", ns, "link", "set", ns_if, "up")
                _sh("ip", "-n", ns, "link", "set", "lo", "up")
                self.addresses.append(addr)
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            err = getattr(exc, "stderr", b"") or b""
            self.skip_reason = (
                "network namespaces are not permitted here "
                f"({err.decode(errors='replace').strip() or exc}); hosts bind distinct "
                "127.0.0.x loopback addresses instead, so no real network path is tested"
            )
            self.destroy()
            self.namespaces, self.addresses = [], [f"127.0.0.{11 + i}" for i in range(self.n)]

    def prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[i]] if self.namespaces else []

    def destroy(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for i in range(self.n):
            subprocess.run(["ip", "link", "del", f"lmv{self.tag}{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class Host:
    def __init__(self, net: Network, i: int, models: Path, store: str, tmp: Path) -> None:
        self.addr = net.addresses[i]
        self.url = f"http://{self.addr}:{PORT}"
        cfg = tmp / f"host{i}.toml"
        cfg.write_text(_host_config(self.addr))
        self.log = tmp / f"host{i}.log"
        cmd = [
            *net.prefix(i),
            sys.executable, "-m", "leanml.cli", "serve", str(models),
            "--host", self.addr, "--port", str(PORT), "--store", store,
            "--config", str(cfg), "--workers", "2", "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, "LEANML_ADMIN_TOKEN": ADMIN_TOKEN}
        self.proc = subprocess.Popen(
            cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"host exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"host not ready:\n{self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _nginx_conf(tmp: Path, hosts: list[Host], port: int) -> Path:
    """deploy/nginx.conf with this run's paths, listen address and host addresses."""
    text = (DEPLOY / "nginx.conf").read_text()
    text = text.replace("pid /run/nginx-leanml.pid;", f"pid {tmp}/nginx.pid;")
    text = text.replace("/var/log/nginx/leanml-error.log", f"{tmp}/nginx-error.log")
    temp = "".join(
        f"    {kind}_temp_path {tmp}/nginx-{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("    access_log off;\n", "    access_log off;\n" + temp)
    text = text.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")
    for i, h in enumerate(hosts):
        text = text.replace(f"{SUBNET}.{11 + i}:{PORT}", f"{h.addr}:{PORT}")
    assert all(f"server {h.addr}:{PORT} " in text for h in hosts)
    conf = tmp / "nginx.conf"
    conf.write_text(text)
    return conf


def _prometheus_conf(tmp: Path, hosts: list[Host]) -> Path:
    """deploy/prometheus.yml (with deploy/leanml-alerts.yml) scraping every 1 s."""
    text = (DEPLOY / "prometheus.yml").read_text()
    text = text.replace("scrape_interval: 5s", "scrape_interval: 1s")
    text = text.replace("scrape_timeout: 4s", "scrape_timeout: 900ms")
    for i, h in enumerate(hosts):
        text = text.replace(f"{SUBNET}.{11 + i}:", f"{h.addr}:")
    conf = tmp / "prometheus.yml"
    conf.write_text(text)
    shutil.copy(DEPLOY / "leanml-alerts.yml", tmp / "leanml-alerts.yml")
    return conf


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _database(url: str):  # type: ignore[no-untyped-def]
    """A fresh database on the test server; yields its SQLAlchemy URL over the Unix socket."""
    db = f"leanml_cluster_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{db}"'))
    try:
        yield f"postgresql+psycopg://postgres@/{db}?host=/var/run/postgresql"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def _predict(c: httpx.Client, texts: list[str]) -> dict:
    r = c.post(f"/v1/models/{NAME}/predict", json={"inputs": texts})
    assert r.status_code == 200, r.text
    return r.json()


def _prom_query(prom: str, q: str, at: float) -> float:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": q, "time": at}, timeout=10)
    res = r.json()["data"]["result"]
    return float(res[0]["value"][1]) if res else float("nan")


def test_three_hosts_behind_nginx(tmp_path, intent_models, intent_texts) -> None:  # type: ignore[no-untyped-def]
    url = os.environ.get("LEANML_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("LEANML_TEST_POSTGRES_URL is not set")
    for tool in (NGINX, PROMETHEUS):
        if not Path(tool).exists():
            pytest.skip(f"{tool} is not installed (apt-get install nginx prometheus)")
    if not Path("/var/run/postgresql").exists():
        pytest.skip("PostgreSQL's Unix socket directory /var/run/postgresql is missing")
    texts = list(intent_texts)
    net = Network(uuid.uuid4().hex[:4], 3)
    hosts: list[Host] = []
    procs: list[subprocess.Popen[bytes]] = []
    with _database(url) as store:
        try:
            net.create()
            for i in range(3):  # one models directory per host: no shared state.json
                models = make_registry(tmp_path / f"models{i}", intent_models)
                hosts.append(Host(net, i, models, store, tmp_path))
            for h in hosts:
                h.wait_ready()
            lb_port, prom_port = _free_port(), _free_port()
            conf = _nginx_conf(tmp_path, hosts, lb_port)
            procs.append(
                subprocess.Popen(
                    [NGINX, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"],
                    stdout=(tmp_path / "nginx.out").open("wb"),
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
            procs.append(
                subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={_prometheus_conf(tmp_path, hosts)}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    stdout=(tmp_path / "prometheus.out").open("wb"),
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
            lb, prom = f"http://127.0.0.1:{lb_port}", f"http://127.0.0.1:{prom_port}"
            _wait(lambda: httpx.get(f"{lb}/health", timeout=2).status_code == 200)
            _wait(lambda: httpx.get(f"{prom}/-/ready", timeout=2).status_code == 200)
            try:
                _run_checks(hosts, lb, prom, texts, store)
            except BaseException:
                for h in hosts:  # shown with the failure (pytest's captured stdout)
                    print(f"--- {h.log}\n{h.log.read_text()[-4000:]}")
                raise
        finally:
            for p in procs:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(30)
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for h in hosts:
                h.kill(signal.SIGTERM)
            net.destroy()
            shutil.rmtree(tmp_path / "tsdb", ignore_errors=True)
    if net.skip_reason:
        pytest.skip(net.skip_reason)


def _wait(ok, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if ok():
                return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.3)


def _load(lb: str, texts: list[str], seconds: float, rate: float, out: list, stop=None):  # type: ignore[no-untyped-def]
    """Paced predictions through nginx (one text each) from 8 threads; appends (t_done, id,
    text) of every 2xx answer to ``out``; a non-2xx answer fails the test."""
    interval = 8 / rate
    t_end = time.monotonic() + seconds
    errors: list[str] = []

    def worker(k: int) -> None:
        with httpx.Client(base_url=lb, timeout=30) as c:
            nxt = time.monotonic() + k * interval / 8
            j = k
            while time.monotonic() < t_end and not (stop and stop.is_set()):
                time.sleep(max(0.0, nxt - time.monotonic()))
                nxt += interval
                text = f"{texts[j % len(texts)]} #{j}"  # unique: no cache hits
                j += 8
                try:
                    body = _predict(c, [text])
                except (AssertionError, httpx.HTTPError) as exc:
                    errors.append(repr(exc))
                    continue
                p = body["predictions"][0]
                out.append((time.time(), p["id"], p["label"]))

    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(worker, range(8)))
    assert not errors, errors[:3]


def _run_checks(hosts, lb, prom, texts, store) -> None:  # type: ignore[no-untyped-def]
    # 1. steady load through nginx for 75 s; Prometheus scrapes every host meanwhile
    done: list[tuple[float, str, str]] = []
    _load(lb, texts, 75, 60.0, done)
    at = done[-1][0] - 2
    client_rate = sum(1 for t, _, _ in done if at - 60 < t <= at) / 60
    promql = _prom_query(prom, "sum(rate(leanml_predictions_total[1m]))", at)
    print(f"client {client_rate:.2f}/s, PromQL {promql:.2f}/s")
    assert abs(promql - client_rate) <= 0.05 * client_rate, (promql, client_rate)
    up = _prom_query(prom, 'count(up{job="leanml"} == 1)', at)
    assert up == 6  # every worker of every host

    # 2. feedback through nginx (any host) joins 100% (batches of 20 from 8 threads)
    batches = [done[i : i + 20] for i in range(0, len(done), 20)]

    def send(batch: list[tuple[float, str, str]]) -> list[str]:
        with httpx.Client(base_url=lb, timeout=60) as c:
            items = [{"id": pid, "label": lab} for _, pid, lab in batch]
            r = c.post(f"/v1/models/{NAME}/feedback", json={"items": items})
            assert r.status_code == 200, r.text
            return [str(i["status"]) for i in r.json()["items"]]

    with cf.ThreadPoolExecutor(8) as ex:
        statuses = [st for part in ex.map(send, batches) for st in part]
    assert statuses.count("joined") == len(done), {s: statuses.count(s) for s in set(statuses)}

    # 3. merged stats (read from every host) equal what was sent; the dashboard of any host
    # shows all 6 processes and the merged count
    sent = len(done)

    def merged_ok() -> bool:
        for h in hosts:
            m = httpx.get(f"{h.url}/v1/models/{NAME}/stats", timeout=10).json()["merged"]
            if (m["count"], m["joined"]) != (sent, sent):
                return False
        return True

    _wait(merged_ok, 30)

    def dashboards() -> list[tuple[int, int]]:
        got = []
        for h in hosts:
            entry = httpx.get(f"{h.url}/dashboard/data.json", timeout=10).json()["models"][0]
            got.append((entry["predictions"], entry["processes"]))
        return got

    # every host shows the merged count and exactly the processes that served: the workers
    # Prometheus saw count predictions (nginx keeps its upstream connections alive, so a
    # host's second worker may serve none; every host serves)
    time.sleep(2.5)  # a scrape after the last prediction
    now = time.time()
    served = _prom_query(prom, "count(sum by (instance) (leanml_predictions_total) > 0)", now)
    by_host = 'label_replace(leanml_predictions_total > 0, "host", "$1", "instance", "(.*):[0-9]+")'
    hosts_served = _prom_query(prom, f"count(count by (host) ({by_host}))", now)
    assert hosts_served == 3 and 3 <= served <= 6, (hosts_served, served)
    seen = dashboards()
    assert all(n == sent and p == served for n, p in seen), (seen, served)

    # 4. a variant switch on host 0 reaches every worker of every host through the store
    r = httpx.put(
        f"{hosts[0].url}/v1/models/{NAME}/variant",
        json={"variant": "compact"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text

    def all_compact() -> bool:
        for h in hosts:
            seen: dict[str, str] = {}
            for _ in range(40):  # fresh connections reach both workers
                with httpx.Client(base_url=h.url, timeout=10) as c:
                    resp = c.post(f"/v1/models/{NAME}/predict", json={"inputs": [texts[0]]})
                seen[resp.headers["x-leanml-worker"]] = resp.json()["variant"]
                if len(seen) == 2:
                    break
            if len(seen) < 2 or set(seen.values()) != {"compact"}:
                return False
        return True

    _wait(all_compact, 30)
    # hosts 1 and 2 never had it in their own state.json before following the store
    with sa.create_engine(store).connect() as conn:
        q = sa.text("select state from leanml_registry_state where name = :n")
        assert '"compact"' in conn.execute(q, {"n": NAME}).scalar()

    # 5. kill -9 one host mid-load: nginx routes around it, no acknowledged label is lost
    acked: dict[str, str] = {}
    refused: list[str] = []  # labels not acknowledged (e.g. their owner was the killed host)
    failures: list[str] = []
    stop = threading.Event()

    def label_loop() -> None:
        with httpx.Client(base_url=lb, timeout=60) as c:
            while not stop.is_set():
                try:
                    body = _predict(c, [f"{texts[len(acked) % len(texts)]} ~{uuid.uuid4().hex}"])
                except (AssertionError, httpx.HTTPError) as exc:  # nginx must route around
                    failures.append(repr(exc))
                    continue
                pid = body["predictions"][0]["id"]
                lab = body["predictions"][0]["label"]
                try:
                    r = c.post(f"/v1/models/{NAME}/feedback", json={"id": pid, "label": lab})
                except httpx.HTTPError as exc:
                    refused.append(repr(exc))
                    continue
                # "duplicate": nginx repeated a label the killed host had stored but not
                # answered; it is acknowledged, so it must be in the log too
                if r.status_code == 200 and r.json()["status"] in ("joined", "stored", "duplicate"):
                    acked[pid] = lab
                else:
                    refused.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=label_loop) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(5)
    n_before = len(acked)
    hosts[2].kill(signal.SIGKILL)
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(60)
    assert not failures, failures[:3]
    print(f"kill -9: {len(acked)} labels acknowledged, {len(refused)} not: {refused[:3]}")
    assert len(acked) > n_before + 50  # the load went on through the two other hosts
    with sa.create_engine(store).connect() as conn:
        logged = {
            r[0]: r[1]
            for r in conn.execute(sa.text("select prediction_id, label from leanml_feedback"))
        }
    lost = [pid for pid, lab in acked.items() if logged.get(pid) != lab]
    assert not lost, f"{len(lost)} acknowledged labels missing from the store"
