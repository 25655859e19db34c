"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright (pytest-playwright
fixtures; the browser is launched by executable path, never downloaded). `kubetrail serve` runs as
a subprocess on the demo's data. A screenshot of each page is saved under
$KUBETRAIL_ARTIFACTS/web (default test-artifacts/web); KUBETRAIL_WRITE_DOCS=1 also refreshes
docs/images/web-*.png. In CI a missing Chromium fails the tests instead of skipping them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("KUBETRAIL_CHROMIUM", "/usr/bin/chromium")
TOKEN = "browser-test-token-0b5e"
ARTIFACTS = Path(os.environ.get("KUBETRAIL_ARTIFACTS", ROOT / "test-artifacts")) / "web"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

try:
    import playwright.sync_api  # noqa: F401
    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - the dev extras install it
    HAVE_PLAYWRIGHT = False


def _require_browser() -> None:
    missing = [] if os.access(CHROMIUM, os.X_OK) else [f"Chromium at {CHROMIUM}"]
    if not HAVE_PLAYWRIGHT:
        missing.append("the playwright package")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need {' and '.join(missing)} (.ci/run installs chromium)")
        pytest.skip(f"missing {' and '.join(missing)}")


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright's launch arguments: Debian's Chromium by path, headless, no sandbox/GPU/network."""
    _require_browser()
    return {"executable_path": CHROMIUM, "headless": True,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-default-apps", "--disable-extensions", "--mute-audio"]}


@pytest.fixture(scope="session")
def browser_context_args() -> dict[str, Any]:
    return {"viewport": {"width": 1400, "height": 1000}, "extra_http_headers": {"Authorization": f"Bearer {TOKEN}"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubetrail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubetrail", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _require_browser()
    tmp = tmp_path_factory.mktemp("browser")
    data = tmp / "data"
    assert kubetrail("demo", "--data", str(data)).returncode == 0
    kubetrail("policy", "lint", str(data / "demo" / "audit-policy.yaml"), "--save-to", str(data))
    kubetrail("check", "apiserver", "--manifest", str(ROOT / "tests" / "data" / "posture" / "apiserver-good.yaml"),
              "--save-to", str(data))
    (tmp / "tokens").write_text(TOKEN + "\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kubetrail", "serve", "--data", str(data), "--listen",
                             f"127.0.0.1:{port}", "--token-file", str(tmp / "tokens")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    try:
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        assert proc.returncode == 0


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get("KUBETRAIL_WRITE_DOCS"):
        shutil.copy(path, ROOT / "docs" / "images" / path.name)


def test_overview(page: Any, site: str) -> None:
    page.goto(site + "/")
    assert page.title() == "Overview · kubetrail"
    assert page.locator("#all-ok").is_visible()
    assert int(page.locator("#records").inner_text()) > 2000
    assert page.locator("#verify").inner_text().startswith("verify: intact")
    assert page.locator("#sources tbody tr").count() >= 1
    assert page.locator("svg.chart rect.bar").count() == 60
    shot(page, "overview")


def test_alerts_filter_and_paging(page: Any, site: str) -> None:
    page.goto(site + "/alerts?limit=20")  # the demo's ~40 alerts (aggregated, issue 15) make two pages of 20
    all_rows = page.locator("#alerts tbody tr").count()
    assert all_rows == 20  # one page of many
    shot(page, "alerts")
    page.select_option("select[name=priority]", "Critical")
    page.click("#alert-filters button")
    page.wait_for_url("**/alerts?*priority=Critical*")
    prios = page.locator("#alerts tbody tr td:nth-child(3)").all_inner_texts()
    assert prios and set(prios) <= {"Emergency", "Alert", "Critical"}
    page.goto(site + "/alerts?limit=20")
    first = page.locator("#alerts tbody tr td:first-child").all_inner_texts()
    page.click("a[rel=next]")
    second = page.locator("#alerts tbody tr td:first-child").all_inner_texts()
    assert second and not set(first) & set(second)


def test_alert_evidence_is_verified(page: Any, site: str) -> None:
    page.goto(site + "/alerts?priority=Critical")
    page.locator("#alerts tbody tr td:first-child a").first.click()
    page.wait_for_url("**/alerts/*")
    rows = page.locator("tr.evidence-row")
    assert rows.count() >= 1
    assert page.locator("tr.evidence-row .verified").count() == rows.count()
    assert "against checkpoint" in rows.first.inner_text()
    page.locator("details summary").first.click()
    assert page.locator("pre.event").first.inner_text().lstrip().startswith("{")
    shot(page, "alert")


def test_credentials_and_a_credential_page(page: Any, site: str) -> None:
    page.goto(site + "/credentials")
    assert page.locator("#credentials tbody tr").count() >= 10
    shot(page, "credentials")
    page.select_option("select[name=kind]", "cert")
    page.click("#cred-filters button")
    page.wait_for_url("**kind=cert*")
    kinds = page.locator("#credentials tbody tr td:nth-child(2)").all_inner_texts()
    assert kinds and set(kinds) == {"cert"}
    # the most used certificate: a creation chain and a uses chart
    page.locator("#credentials tbody tr td:first-child a").first.click()
    page.wait_for_url("**/credentials/**")
    assert page.locator("tr.chain-step").count() >= 1
    assert page.locator("#uses-chart svg rect.bar").count() >= 1
    assert page.locator("#source-ips li").count() >= 1
    shot(page, "credential")


def test_search_and_timeline(page: Any, site: str) -> None:
    page.goto(site + "/search")
    page.fill("input[name=verb]", "delete")
    page.click("#search-form button")
    page.wait_for_url("**verb=delete*")
    verbs = page.locator("#results tbody tr td:nth-child(5)").all_inner_texts()
    assert verbs and all(v.startswith("delete ") for v in verbs)
    shot(page, "search")
    page.goto(site + "/alerts?priority=Critical")
    subject = page.locator("#alerts tbody tr td:nth-child(5)").first.inner_text()
    page.goto(site + "/timeline")
    page.fill("input[name=value]", subject)
    page.click("#timeline-form button")
    page.wait_for_url("**/timeline?*")
    assert page.locator("#timeline tbody tr.event-row").count() >= 1
    assert page.locator("#timeline tbody tr.alert-row").count() >= 1
    shot(page, "timeline")


def test_posture(page: Any, site: str) -> None:
    page.goto(site + "/posture")
    assert page.locator("#policy-lint .posture-row").count() >= 1
    assert page.locator("#check-apiserver .posture-row").count() >= 1
    shot(page, "posture")


def test_token_once_in_the_address_then_a_cookie(browser: Any, site: str) -> None:
    context = browser.new_context()  # no Authorization header
    try:
        page = context.new_page()
        assert page.goto(site + "/alerts").status == 401
        page.goto(f"{site}/alerts?token={TOKEN}")
        assert page.url == site + "/alerts" and page.title() == "Alerts · kubetrail"
        assert page.goto(site + "/credentials").status == 200
    finally:
        context.close()
