"""A real Superset over the published tables: REST API, roles, and a real browser.

The session fixture publishes a small outage scenario through the real flow,
then runs the same set-up as ``orderhealth superset`` (own environment,
migrations, roles, users, DuckDB views, the bundle from ``superset/bundle``)
and serves Superset on a free loopback port.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from lakehouse.reader import read_table
from lakehouse.tables import HEALTH_METRICS
from orderhealth.generator import GeneratorConfig
from orderhealth.superset_bundle import charts, dashboards
from orderhealth.superset_cmd import bootstrap, serve, wait_healthy
from tests.integration.conftest import Kafka, load_topic, run_to_end

pytestmark = pytest.mark.integration


class Api:
    """A logged-in REST client (JWT plus CSRF token, as Superset's API expects)."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        status, body = self.call(
            "POST",
            "/api/v1/security/login",
            {"username": username, "password": password, "provider": "db", "refresh": True},
        )
        assert status == 200, body
        self._token = body["access_token"]
        status, body = self.call("GET", "/api/v1/security/csrf_token/")
        self._csrf = body["result"]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Referer": self.base}
        if getattr(self, "_token", None):
            headers["Authorization"] = f"Bearer {self._token}"
        if getattr(self, "_csrf", None):
            headers["X-CSRFToken"] = self._csrf
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with self._opener.open(request, timeout=120) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def upload(self, path: str, field: str, filename: str, content: bytes, **fields: str) -> Any:
        """POST a multipart form (what the UI's import dialog sends)."""
        boundary = secrets.token_hex(16)
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
            for name, value in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/zip\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {
            "Referer": self.base,
            "Authorization": f"Bearer {self._token}",
            "X-CSRFToken": self._csrf,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        request = urllib.request.Request(self.base + path, data, headers, method="POST")
        try:
            with self._opener.open(request, timeout=300) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def superset(broker: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    lakehouse = tmp_path_factory.mktemp("lakehouse")
    # A slow order rate spreads 45k events over days: several final days, so
    # "change" and "movers" have data.
    config = GeneratorConfig(
        events=45_000, seed=3, scenario="warehouse_outage", orders_per_minute=1.0
    )
    topic = load_topic(broker, config)
    run_to_end(broker, topic, lakehouse)
    home = tmp_path_factory.mktemp("superset")
    passwords = {"admin": secrets.token_urlsafe(12), "executive": secrets.token_urlsafe(12)}
    setup = bootstrap(
        str(lakehouse),
        home,
        users=[
            f"admin:Admin:{passwords['admin']}",
            f"executive:Executive:{passwords['executive']}",
        ],
        on_step=lambda _: None,
    )
    port = _free_port()
    process = serve(setup, port)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(process, base, home / "superset.log")
    try:
        yield {"base": base, "passwords": passwords, "lakehouse": lakehouse, "home": home}
    finally:
        process.terminate()
        process.wait(timeout=60)


def _chart_ids(api: Api) -> dict[str, int]:
    status, body = api.call("GET", "/api/v1/chart/?q=(page_size:100)")
    assert status == 200, body
    return {c["slice_name"]: c["id"] for c in body["result"]}


def test_every_chart_of_the_bundle_returns_rows(superset: dict[str, Any]) -> None:
    api = Api(superset["base"], "admin", superset["passwords"]["admin"])
    # The set-up imported the bundle already; importing it again through the
    # REST API (as the UI does) must work and overwrite in place.
    bundle = (superset["home"] / "orderhealth_bundle.zip").read_bytes()
    status, body = api.upload("/api/v1/assets/import/", "bundle", "orderhealth_bundle.zip", bundle)
    assert status == 200, body
    ids = _chart_ids(api)
    assert set(ids) == set(charts())
    for name, chart_id in ids.items():
        status, body = api.call("GET", f"/api/v1/chart/{chart_id}/data/")
        assert status == 200, (name, body)
        assert body["result"][0]["rowcount"] > 0, name
    status, body = api.call("GET", "/api/v1/dashboard/")
    assert {d["dashboard_title"] for d in body["result"]} == {
        d["dashboard_title"] for d in dashboards().values()
    }


def test_headline_index_equals_the_published_delta_table(superset: dict[str, Any]) -> None:
    api = Api(superset["base"], "admin", superset["passwords"]["admin"])
    chart_id = _chart_ids(api)["Fulfilment health index (company)"]
    status, body = api.call("GET", f"/api/v1/chart/{chart_id}/data/")
    assert status == 200, body
    points = sorted(body["result"][0]["data"], key=lambda row: row["window_start"])
    table = read_table(str(superset["lakehouse"]), HEALTH_METRICS)
    mask = pc.and_(
        pc.and_(pc.equal(table["window_size"], "1d"), pc.equal(table["dimension"], "all")),
        table["is_final"],
    )
    days = sorted(table.filter(mask).to_pylist(), key=lambda row: row["window_start"])
    assert len(points) == len(days) > 1
    latest = days[-1]
    assert points[-1]["window_start"] == latest["window_start"].timestamp() * 1000
    assert points[-1]["health_index"] == pytest.approx(latest["health_index"], rel=1e-12)

    movers = _chart_ids(api)["Health index by warehouse (latest final day)"]
    status, body = api.call("GET", f"/api/v1/chart/{movers}/data/")
    shown = {r["dimension_value"]: r["health_index"] for r in body["result"][0]["data"]}
    by_day = [
        r
        for r in table.to_pylist()
        if r["window_size"] == "1d" and r["dimension"] == "warehouse_id" and r["is_final"]
    ]
    newest = {}
    for r in sorted(by_day, key=lambda r: r["window_start"]):
        newest[r["dimension_value"]] = r["health_index"]
    assert shown == pytest.approx(newest, rel=1e-12)


def test_an_executive_views_but_cannot_query_or_edit(superset: dict[str, Any]) -> None:
    api = Api(superset["base"], "executive", superset["passwords"]["executive"])
    status, body = api.call("GET", "/api/v1/dashboard/fulfilment-health")
    assert status == 200, body
    status, body = api.call("GET", "/api/v1/dashboard/fulfilment-health/charts")
    assert status == 200 and len(body["result"]) == 8, body
    chart_id = body["result"][0]["id"]
    status, _ = api.call("GET", f"/api/v1/chart/{chart_id}/data/")
    assert status == 200
    admin = Api(superset["base"], "admin", superset["passwords"]["admin"])
    status, body = admin.call("GET", "/api/v1/database/")
    database_id = body["result"][0]["id"]
    status, body = api.call(
        "POST",
        "/api/v1/sqllab/execute/",
        {"database_id": database_id, "sql": "SELECT 1", "runAsync": False},
    )
    assert status in (401, 403), (status, body)
    status, body = api.call("PUT", f"/api/v1/chart/{chart_id}", {"slice_name": "renamed"})
    assert status in (401, 403), (status, body)
    # The admin, by contrast, may run SQL Lab queries over the views.
    status, body = admin.call(
        "POST",
        "/api/v1/sqllab/execute/",
        {"database_id": database_id, "sql": "SELECT count(*) AS n FROM health_metrics"},
    )
    assert status == 200 and body["data"][0]["n"] > 0, body


def test_a_stale_event_log_beacon_cannot_undo_a_login(superset: dict[str, Any]) -> None:
    """The login page's logger beacon, sent with the logged-out cookie, must not reset it.

    Without ``superset_config``'s hook Superset redirects that beacon to the
    login page and sets a fresh anonymous session cookie, which the browser may
    store after the login's cookie: the user is bounced back to the login page.
    """
    import re

    base = superset["base"]
    jar = CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with browser.open(f"{base}/login/", timeout=60) as reply:
        page = reply.read().decode()
    token = re.search(r'id="csrf_token"\s+value="([^"]+)"', page)
    assert token, "no CSRF token on the login page"
    logged_out = "; ".join(f"{c.name}={c.value}" for c in jar)
    form = urllib.parse.urlencode(
        {
            "csrf_token": token.group(1),
            "username": "executive",
            "password": superset["passwords"]["executive"],
        }
    ).encode()
    with browser.open(f"{base}/login/", form, timeout=60) as reply:
        assert "/login" not in reply.url, "the login form was refused"

    boundary = secrets.token_hex(8)
    beacon = urllib.request.Request(
        f"{base}/superset/log/?explode=events",
        f'--{boundary}\r\nContent-Disposition: form-data; name="events"\r\n\r\n[]\r\n'
        f"--{boundary}--\r\n".encode(),
        {"Cookie": logged_out, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    plain = urllib.request.build_opener(_NoRedirect)
    with plain.open(beacon, timeout=60) as reply:
        assert reply.status == 204
        assert reply.headers.get_all("Set-Cookie") is None
    with browser.open(f"{base}/api/v1/me/", timeout=60) as reply:
        assert json.loads(reply.read())["result"]["username"] == "executive"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Surface a redirect as the answer instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_the_dashboard_renders_in_headless_chromium(
    superset: dict[str, Any], tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "apt-get install -y chromium chromium-driver"
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1600,2400",
    ):
        options.add_argument(flag)
    options.binary_location = chromium
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        base = superset["base"]
        browser.get(f"{base}/login/")
        _wait(lambda: browser.find_elements(By.ID, "username"))
        browser.find_element(By.ID, "username").send_keys("executive")
        password = browser.find_element(By.ID, "password")
        password.send_keys(superset["passwords"]["executive"])
        password.send_keys(Keys.ENTER)
        _wait(
            lambda: "/login" not in browser.current_url,
            what=lambda: f"the login to leave {browser.current_url}",
        )
        browser.get(f"{base}/superset/dashboard/fulfilment-health/")
        grid = "[data-test='chart-grid-component']"

        def rendered() -> bool:
            cells = browser.find_elements(By.CSS_SELECTOR, grid)
            loading = browser.find_elements(By.CSS_SELECTOR, "[data-test='loading-indicator']")
            drawn = [c for c in cells if c.find_elements(By.CSS_SELECTOR, "canvas, svg, table")]
            return len(cells) == 8 and not loading and len(drawn) == 8

        _wait(rendered, timeout=180, what=lambda: f"8 drawn charts at {browser.current_url}")
        screenshot = tmp_path / "fulfilment-health.png"
        browser.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 50_000
        errors = browser.find_elements(
            By.CSS_SELECTOR, f"{grid} [data-test='error-alert'], {grid} .ant-alert-error"
        )
        assert not errors, [e.text for e in errors]
        headers = browser.find_elements(By.CSS_SELECTOR, "[data-test='slice-header']")
        shown = {h.text.split("\n")[0] for h in headers}
        layout = dashboards()["fulfilment-health"]["position"]
        expected = {
            v["meta"]["sliceName"]
            for v in layout.values()
            if isinstance(v, dict) and v.get("type") == "CHART"
        }
        assert shown == expected
    finally:
        browser.quit()


def _wait(condition: Any, timeout: float = 60, what: Any = lambda: "the browser") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.5)


def test_newly_published_data_shows_without_reimporting(superset: dict[str, Any]) -> None:
    """The views read each table's current Delta version: publish, then query again."""
    from datetime import timedelta

    from lakehouse.publication import Publisher
    from lakehouse.tables import HEALTH_METRICS_STAGING, METRIC_COLUMNS
    from lakehouse.writer import Chunk, DeltaWriter

    root = str(superset["lakehouse"])
    table = read_table(root, HEALTH_METRICS)
    rows = [
        r
        for r in table.to_pylist()
        if r["window_size"] == "1d" and r["dimension"] == "all" and r["is_final"]
    ]
    newest = max(rows, key=lambda r: r["window_start"])
    new_day = {c: newest[c] for c in METRIC_COLUMNS}
    new_day.update(
        window_start=newest["window_start"] + timedelta(days=30),
        window_end=newest["window_end"] + timedelta(days=30),
        health_index=42.0,
    )
    DeltaWriter(root, HEALTH_METRICS_STAGING).upsert([Chunk({"test/0": 1}, [new_day])])
    (run,) = Publisher(root).run_all()
    assert run.outcome in ("passed", "warning")

    api = Api(superset["base"], "admin", superset["passwords"]["admin"])
    chart_id = _chart_ids(api)["Fulfilment health index (company)"]
    status, body = api.call("GET", f"/api/v1/chart/{chart_id}/data/?force=true")
    assert status == 200, body
    points = sorted(body["result"][0]["data"], key=lambda row: row["window_start"])
    assert points[-1]["health_index"] == 42.0
