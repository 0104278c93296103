"""The web console in a real browser (headless Chromium) against a real worker on the real broker.

One worker ingests a load of valid records plus the DLQ-bound part of the
hostile corpus (tests/faults) and values written to attack HTML. A console
process (``streamlake console``) samples the broker. Chromium then checks:
the overview shows the worker's own counters; the stream page lists every
source partition with its owner; a hostile key, value and header render as
text (no element, no script run); the redrive dry run counts exactly the
records of its filter, and execute (behind the confirmation and the token)
sends that many back. Screenshots go to ``.streamlake/test-artifacts/console/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamlake.console.process import ConsoleProcess
from streamlake.partitioner import partition_for_key
from tests import lake_fixtures
from tests.faults.support import PARTITIONS, topics
from tests.faults.test_hostile_records import CORPUS, FORWARD
from tests.kafka_fixtures import ROOT, TestEnv, produce, wait_for
from tests.lake_fixtures import LakeEnv, wait_rows

lake_env = lake_fixtures.lake_env  # the lake fixtures, for this module's tests
lander_factory = lake_fixtures.lander_factory

ARTIFACTS = ROOT / ".streamlake" / "test-artifacts" / "console"
TOKEN = "console-test-token"  # a test value, passed through the environment like a real one

#: The newest event time of the valid records (2026-01-02T03:04:05Z): the lake's freshness must show it.
NEWEST_TS_MS = 1767323045000
NEWEST_TS_TEXT = "2026-01-02T03:04:05"

#: Keys, values and headers that would run script or add elements if a page took them as HTML.
XSS_KEY = '"><svg id="pwned-key" onload="window.__pwned=1">'
XSS_VALUE = b'<script>window.__pwned=2</script><img id="pwned-value" src=x onerror="window.__pwned=3">'
XSS_HEADER = ("<b id='pwned-header-name'>h</b>", b"</code></td><img id='pwned-header' src=x onerror=alert(1)>")


def _chromium_driver(width: int = 1400, height: int = 1000):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.fail("chromium and chromedriver are needed for the console tests; run ./scripts/setup "
                    "(it installs the Debian packages chromium and chromium-driver)", pytrace=False)
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.binary_location = browser
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post_json(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def console(test_env: TestEnv, lake_env: LakeEnv) -> Iterator[ConsoleProcess]:
    """A console of the test's app and lake (the lake fixture sets its catalog and warehouse first)."""
    # Port 0: the console binds any free port and prints its URL. A port probed free beforehand could
    # be taken (by a worker's web server or an outgoing connection) before the console binds it.
    proc = ConsoleProcess(ROOT, test_env.environ(STREAMLAKE_CONSOLE_TOKEN=TOKEN), test_env.tmp / "console.log",
                          0, interval=0.5)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def browser() -> Iterator[Callable[[], Any]]:
    """Headless Chromium, started in the background while the test starts its worker."""
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(_chromium_driver)
        yield starting.result
        if starting.exception() is None:
            starting.result().quit()


def _load() -> tuple[list[dict], dict[str, int]]:
    """Valid records, the DLQ-bound hostile corpus and the HTML attacks; and the DLQ count per reason."""
    records = [{"key": f"ok-{k}".encode(),
                "value": orjson.dumps({"order_id": f"ok-{k}", "seq": s, "ts": NEWEST_TS_MS - 1000 * (5 - s) - k})}
               for s in range(1, 6) for k in range(40)]
    hostile = [c for c in CORPUS if c.expected != FORWARD and (c.value is None or len(c.value) < 20_000)]
    records += [{"key": c.key, "value": c.value, "headers": c.headers,
                 "partition": c.partition} for c in hostile]
    xss = [
        {"key": XSS_KEY.encode(), "value": XSS_VALUE, "headers": [XSS_HEADER]},  # invalid-json
        {"key": XSS_KEY.encode(), "value": orjson.dumps({"order_id": "<i>other</i>", "seq": 1}),
         "headers": [XSS_HEADER]},  # key-mismatch
    ]
    records += xss
    for rec in records:
        if rec.get("partition") is None:
            rec["partition"] = partition_for_key(rec["key"], PARTITIONS) if rec["key"] else 0
    dlq: dict[str, int] = {}
    for c in hostile:
        dlq[c.expected] = dlq.get(c.expected, 0) + 1
    dlq["invalid-json"] = dlq.get("invalid-json", 0) + 1
    dlq["key-mismatch"] = dlq.get("key-mismatch", 0) + 1
    return records, dlq


def _table(driver, selector: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The cells of a table's body, read in one step (the page replaces rows as it refreshes)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent));", selector)


def _shot(driver, name: str) -> Path:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_console_pages_in_a_real_browser(test_env: TestEnv, lake_env: LakeEnv, worker_factory, lander_factory,
                                         console: ConsoleProcess, browser: Callable[[], Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    began = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - began, 1)

    lander = lander_factory("lander", wait=False)
    worker = worker_factory("console")
    lander.wait_ready()
    phase("worker and lander ready")
    url = console.wait_url().rstrip("/")
    records, dlq_by_reason = _load()
    source, _, _ = topics(test_env)
    asyncio.run(produce(test_env.broker.bootstrap, source, records))

    counters_url = f"http://127.0.0.1:{worker.web_port}/streamlake/counters"
    counted = wait_for(lambda: (c := _get_json(counters_url)["sales.orders"])["records_in"] >= len(records) and c,
                       timeout=60, what="the worker to count every record")
    assert counted["dlq_by_reason"] == dlq_by_reason, "the load must dead-letter what the README's rules say"
    fields = ("records_in", "forwarded", "dropped", "dlq")
    want = {f: counted[f] for f in fields}
    # The console reads the counters changelog, which the worker flushes on its commit interval.
    wait_for(lambda: {f: _get_json(f"{url}/api/overview")["streams"][0]["totals"][f] for f in fields} == want,
             timeout=30, what="the console's totals to reach the worker's counters")
    # Every forwarded record lands once; the console samples the table's metadata every few seconds.
    wait_rows(lake_env, counted["forwarded"])
    wait_for(lambda: (_get_json(f"{url}/api/overview")["streams"][0]["lake"] or {}).get("rows") == counted["forwarded"],
             timeout=30, what="the console's lake freshness to show every landed row")

    phase("console totals")
    driver = browser()
    phase("chromium")
    wait = WebDriverWait(driver, 30, poll_frequency=0.2)

    # -- overview: the numbers shown are the worker's counters
    driver.get(url + "/")
    card = driver.find_element(By.CSS_SELECTOR, '.card[data-stream="sales.orders"]')

    def shown() -> dict[str, int]:
        return {f: int(card.find_element(By.CSS_SELECTOR, f'[data-field="{f}"]').text) for f in fields}
    wait.until(lambda d: shown() == want and d.find_elements(By.CSS_SELECTOR, ".card .uplot"))
    classes = {c: int(card.find_element(By.CSS_SELECTOR, f'[data-class="{c}"]').text)
               for c in ("in_order", "gap", "duplicate", "late")}
    assert classes == {c: counted["classes"].get(c, 0) for c in classes}
    assert card.find_element(By.CSS_SELECTOR, '[data-field="lag"]').text == "0"
    assert int(card.find_element(By.CSS_SELECTOR, '[data-field="lake_rows"]').text) == counted["forwarded"]
    assert card.find_element(By.CSS_SELECTOR, '[data-field="lake_newest"]').text.startswith(NEWEST_TS_TEXT)
    _shot(driver, "overview")
    phase("overview")

    # -- stream: every source partition with its owner
    driver.get(url + "/stream/sales.orders")
    wait.until(lambda d: len([r for r in _table(d, "#partitions") if r[0] == "source"]) == PARTITIONS)
    source_rows = [r for r in _table(driver, "#partitions") if r[0] == "source"]
    assert all(r[6] != "-" for r in source_rows), f"every source partition has an owner: {source_rows}"
    assert sum(int(r[4]) for r in source_rows) == len(records)
    assert {r[1]: int(r[2]) for r in _table(driver, "#dlq-reasons")} == dlq_by_reason
    _shot(driver, "stream")
    phase("stream")

    # -- lake: the table, its snapshots and a verify run on request
    driver.get(url + "/lake")
    table = driver.find_element(By.CSS_SELECTOR, f'[data-table="{lake_env.table}"]')
    assert int(table.find_element(By.CSS_SELECTOR, '[data-field="rows"]').text) == counted["forwarded"]
    assert table.find_elements(By.CSS_SELECTOR, "table.snapshots tbody tr")
    table.find_element(By.CSS_SELECTOR, "a.action").click()
    table = driver.find_element(By.CSS_SELECTOR, f'[data-table="{lake_env.table}"]')
    assert table.find_element(By.CSS_SELECTOR, '[data-field="verify"]').text == "OK"
    assert "missing 0" in table.find_element(By.CSS_SELECTOR, ".verify").text
    _shot(driver, "lake")
    phase("lake")

    # -- DLQ browser: hostile values are text
    driver.get(url + "/dlq?stream=sales.orders&reason=key-mismatch&limit=100")
    records_shown = driver.find_elements(By.CSS_SELECTOR, "#records .record")
    assert len(records_shown) == dlq_by_reason["key-mismatch"]
    payload = driver.find_elements(By.CSS_SELECTOR, "details.payload")
    assert payload and not any(p.get_attribute("open") for p in payload), "values are hidden by default"
    for summary in driver.find_elements(By.CSS_SELECTOR, "details.payload summary"):
        summary.click()
    page_text = driver.find_element(By.ID, "records").text
    assert XSS_KEY in page_text
    assert XSS_HEADER[0] in page_text and XSS_HEADER[1].decode() in page_text
    for element_id in ("pwned-key", "pwned-value", "pwned-header", "pwned-header-name"):
        assert not driver.find_elements(By.ID, element_id), f"a hostile value became an element: #{element_id}"
    assert driver.execute_script("return window.__pwned === undefined")
    _shot(driver, "dlq-hostile")
    phase("dlq")

    driver.get(url + "/dlq?stream=sales.orders&reason=invalid-json&limit=100")
    assert XSS_VALUE.decode() in driver.find_element(By.ID, "records").get_attribute("textContent")
    assert not driver.find_elements(By.ID, "pwned-value")
    assert driver.execute_script("return window.__pwned === undefined")

    # -- redrive: the dry run counts exactly the filter's records, execute sends them after confirmation
    expected = dlq_by_reason["invalid-json"]
    driver.find_element(By.ID, "redrive-dry-run").click()
    result = driver.find_element(By.ID, "redrive-result")
    wait.until(lambda d: result.is_displayed() and result.find_element(By.CSS_SELECTOR, '[data-field="sent"]').text)
    assert result.find_element(By.CSS_SELECTOR, '[data-field="mode"]').text == "dry-run"
    assert int(result.find_element(By.CSS_SELECTOR, '[data-field="matched"]').text) == expected
    assert int(result.find_element(By.CSS_SELECTOR, '[data-field="sent"]').text) == expected
    _shot(driver, "dlq-dry-run")
    phase("dry run")

    # without the token the API refuses (the console has one configured), and without the header too
    status, body = _post_json(f"{url}/api/dlq/redrive",
                              {"stream": "sales.orders", "reason": "invalid-json", "mode": "execute",
                               "confirm": True, "redrive_id": "r-test"}, {"X-StreamLake-Console": "redrive"})
    assert status == 403 and "token" in body["error"]
    status, _ = _post_json(f"{url}/api/dlq/redrive", {"stream": "sales.orders", "mode": "dry-run"}, {})
    assert status == 403

    driver.find_element(By.ID, "redrive-execute").click()
    confirm = driver.find_element(By.ID, "redrive-confirm")
    wait.until(lambda d: confirm.is_displayed())
    assert int(confirm.find_element(By.CSS_SELECTOR, '[data-field="confirm_count"]').text) == expected
    driver.find_element(By.ID, "redrive-token").send_keys(TOKEN)
    driver.find_element(By.ID, "redrive-confirm-yes").click()
    wait.until(lambda d: result.find_element(By.CSS_SELECTOR, '[data-field="mode"]').text == "execute")
    assert driver.find_element(By.ID, "redrive-error").get_attribute("hidden") is not None
    assert int(result.find_element(By.CSS_SELECTOR, '[data-field="sent"]').text) == expected
    _shot(driver, "dlq-executed")
    phase("execute")

    # The redriven records came back through the worker (and failed again: they are still invalid JSON).
    wait_for(lambda: _get_json(counters_url)["sales.orders"]["records_in"] == len(records) + expected,
             timeout=30, what="the worker to read the redriven records")
    phase("redriven records read")
    print(f"\n[console] seconds since the test began: {phases}", flush=True)
    assert worker.proc.poll() is None
    assert os.path.exists(ARTIFACTS / "overview.png")
