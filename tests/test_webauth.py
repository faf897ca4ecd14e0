"""Optional TLS, basic auth (exporter-toolkit web config, bcrypt) and bearer token, with real clients:
curl, and a real Prometheus scraping with basic_auth and with authorization + tls_config."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from demo.localprom import PrometheusServer, free_port

from .limits_stack import Serve

PASSWORD, TOKEN = "s3cret pass", "tok-0123456789abcdef"


@dataclass
class Creds:
    root: Path
    ca: Path
    web_config: Path
    token_file: Path


@pytest.fixture()
def creds(tmp_path: Path) -> Creds:
    """A self-signed certificate for 127.0.0.1 (openssl CLI), a web config with it and a bcrypt user, a token."""
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")  # htpasswd's form
    web = tmp_path / "web.yml"
    # Relative paths are relative to the web config file, as in exporter-toolkit.
    web.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                                   "basic_auth_users": {"prometheus": hashed}}))
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    return Creds(tmp_path, crt, web, token)


def curl(url: str, *args: str) -> tuple[int, str, str]:
    """(HTTP status, headers, body) from the curl CLI; status 0 when curl itself failed (TLS, refused)."""
    proc = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/stderr", "-w", "\n%{http_code}", *args, url],
                          capture_output=True, text=True, timeout=30)
    head, _, code = proc.stdout.rpartition("\n")
    return int(code or 0), head, proc.stderr


@pytest.fixture()
def tls_serve(creds: Creds) -> Iterator[Serve]:
    api = {"webConfigFile": str(creds.web_config), "bearerTokenFile": str(creds.token_file),
           "openPaths": ["/healthz"]}
    with Serve(creds.root, f"http://127.0.0.1:{free_port()}", api=api, https=creds.ca) as s:
        yield s


def test_tls_basic_and_bearer_with_curl(creds: Creds, tls_serve: Serve) -> None:
    url = f"https://127.0.0.1:{tls_serve.port}"
    ca = ["--cacert", str(creds.ca)]
    code, _, body = curl(f"{url}/metrics", *ca, "-u", f"prometheus:{PASSWORD}")
    assert code == 200 and "chargeback_up 0.0" in body
    code, _, body = curl(f"{url}/metrics", *ca, "-H", f"Authorization: Bearer {TOKEN}")
    assert code == 200 and "chargeback_up" in body
    for bad in (["-u", "prometheus:wrong"], ["-u", f"nobody:{PASSWORD}"], ["-H", "Authorization: Bearer wrong"],
                ["-H", f"Authorization: Bearer {TOKEN}x"], ["-H", "Authorization: Basic !!!"], []):
        code, head, body = curl(f"{url}/metrics", *ca, *bad)
        assert code == 401, bad
        assert 'www-authenticate: basic realm="chargeback"' in head.lower()
        assert 'www-authenticate: bearer realm="chargeback"' in head.lower()
        assert "x-content-type-options: nosniff" in head.lower() and "chargeback_up" not in body
    code, _, _ = curl(f"{url}/readyz", *ca)
    assert code == 401  # not in openPaths
    code, _, body = curl(f"{url}/healthz", *ca)  # in openPaths
    assert code == 200 and '"alive": true' in body
    code, _, _ = curl(f"{url}/metrics", "-u", f"prometheus:{PASSWORD}")  # no CA: the certificate is not trusted
    assert code == 0
    code, _, _ = curl(f"http://127.0.0.1:{tls_serve.port}/metrics", "-u", f"prometheus:{PASSWORD}")
    assert code != 200  # plain HTTP on the TLS port gets nothing
    # A rotated token file is picked up; the old token stops working.
    creds.token_file.write_text("rotated-token-value-2")
    assert curl(f"{url}/metrics", *ca, "-H", "Authorization: Bearer rotated-token-value-2")[0] == 200
    assert curl(f"{url}/metrics", *ca, "-H", f"Authorization: Bearer {TOKEN}")[0] == 401


def test_prometheus_scrapes_with_basic_auth_and_bearer_over_tls(creds: Creds, tls_serve: Serve) -> None:
    (creds.root / "password").write_text(PASSWORD)
    (creds.root / "wrong").write_text("not it")
    tls = {"scheme": "https", "tls_config": {"ca_file": str(creds.ca)}}
    options: dict[str, dict[str, object]] = {
        "basic": {**tls, "basic_auth": {"username": "prometheus", "password_file": str(creds.root / "password")}},
        "bearer": {**tls, "authorization": {"type": "Bearer", "credentials_file": str(creds.token_file)}},
        "wrong": {**tls, "basic_auth": {"username": "prometheus", "password_file": str(creds.root / "wrong")}},
    }
    target = f"127.0.0.1:{tls_serve.port}"
    with PrometheusServer(creds.root / "prom", dict.fromkeys(options, target), "1s",
                          scrape_options=options) as prom:
        def up() -> dict[str, float]:
            body = requests.get(f"{prom.url}/api/v1/query", params={"query": "up"}, timeout=10).json()
            return {r["metric"]["job"]: float(r["value"][1]) for r in body["data"]["result"]}

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(up()) < 3:
            time.sleep(0.5)
        assert up() == {"basic": 1.0, "bearer": 1.0, "wrong": 0.0}
        body = requests.get(f"{prom.url}/api/v1/query", params={"query": "chargeback_up"}, timeout=10).json()
        assert sorted(r["metric"]["job"] for r in body["data"]["result"]) == ["basic", "bearer"]


def test_auth_is_off_by_default(tmp_path: Path) -> None:
    with Serve(tmp_path, f"http://127.0.0.1:{free_port()}") as s:
        assert requests.get(f"{s.url}/metrics", timeout=10).status_code == 200


@pytest.mark.parametrize(("web", "expect"), [
    ({"basic_auth_users": {"a": "plaintext"}}, "basic_auth_users.a: not a bcrypt hash"),
    ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "missing.key"}}, "cannot load certificate"),
    ({"tls_server_confg": {}}, "tls_server_confg: Extra inputs are not permitted"),
])
def test_bad_web_config_is_one_line(tmp_path: Path, web: dict[str, object], expect: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(web))
    proc = subprocess.run([sys.executable, "-m", "exporter", "serve", "--web.config.file", str(path),
                           "--listen", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-500:]
    assert proc.stderr.startswith("chargeback: error: web config") and expect in proc.stderr
