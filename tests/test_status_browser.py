"""The status page in a real browser: headless Chromium (Debian's chromium and
chromium-driver, installed by .ci/run) driven by selenium, against a real cluster.
Screenshots are saved to the test's tmp dir."""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from test_status import _get, _inputs, _wait_for, watched  # noqa: F401 (watched is a fixture)
from conftest import TEST_JOBS

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is missing (apt-get install chromium chromium-driver; .ci/run does)"
    return None


@pytest.fixture
def browser(tmp_path):
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,900", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=os.devnull), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _text(driver, selector: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.CSS_SELECTOR, selector).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def test_the_page_shows_progress_the_end_and_a_failure_as_text(watched, browser, tmp_path):  # noqa: F811
    job = watched.popen_submit(TEST_JOBS / "chatty.py", _inputs(tmp_path, 6), "-o", tmp_path / "out",
                               "--delay", "1.5")
    job_id = _wait_for(lambda: [j["job_id"] for j in _get(watched, "/api/jobs") if j["state"] == "running"],
                       "a running job")[0]
    browser.get(watched.http + "/")
    row = f'tr[data-job="{job_id}"]'
    _wait_for(lambda: "running" in _text(browser, row), "the job listed as running on the page")
    assert "Chatty" in _text(browser, row) and "map " in _text(browser, row) and "/6" in _text(browser, row)
    assert "w0" in _text(browser, "main") and "w1" in _text(browser, "main")  # the workers table
    browser.save_screenshot(str(tmp_path / "overview-running.png"))

    browser.get(f"{watched.http}/jobs/{job_id}")
    facts = _wait_for(lambda: _text(browser, '[data-phase="map"] .progress-facts'), "the map phase's progress")
    assert "%" in facts and "elapsed" in facts
    seen = {_text(browser, '[data-phase="map"]').split(" tasks")[0]}
    while job.poll() is None:
        seen.add(_text(browser, '[data-phase="map"]').split(" tasks")[0])
        time.sleep(0.3)
    assert len(seen - {""}) >= 2, seen  # the page moved with the job
    _wait_for(lambda: _text(browser, "#job-state") == "succeeded", "the finished state on the page")
    phase = _text(browser, '[data-phase="map"]').replace("\n", " ")
    assert "map 6/6 tasks" in phase and re.search(r"· (\d+) B of \1 B read", phase), phase
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1100, min(4000, max(900, height + 150)))  # the whole page, tasks table too
    browser.save_screenshot(str(tmp_path / "job-succeeded.png"))
    browser.set_window_size(1100, 900)

    bad = tmp_path / "bad.txt"
    bad.write_text("fine\nthis will FAIL <script>alert(1)</script>\n")
    failed = watched.submit(TEST_JOBS / "chatty.py", bad, "-o", tmp_path / "out2", "--max-attempts", "1")
    assert failed.returncode == 1
    failed_id = [j["job_id"] for j in _get(watched, "/api/jobs") if j["state"] == "failed"][0]
    browser.get(f"{watched.http}/jobs/{failed_id}")
    _wait_for(lambda: _text(browser, "#job-state") == "failed", "the failed state on the page")
    assert "<script>alert(1)</script>" in _text(browser, "#job-error")  # shown as text, not run
    assert "ValueError" in _text(browser, ".traceback")
    assert "about to fail on 'this will FAIL <script>alert(1)</script>'" in _text(browser, ".log-tail")
    assert browser.execute_script("return document.querySelectorAll('main script').length") == 0
    from selenium.common.exceptions import NoAlertPresentException

    try:
        browser.switch_to.alert.text
    except NoAlertPresentException:
        pass
    else:
        raise AssertionError("the job's error ran as a script")
    browser.set_window_size(390, 844)  # a phone
    browser.save_screenshot(str(tmp_path / "job-failed-phone.png"))
    browser.set_window_size(1100, 900)
    browser.save_screenshot(str(tmp_path / "job-failed.png"))
    # the link's target, read from the worker that holds it (the page redraws itself: no click on a moving target)
    browser.get(browser.execute_script("return document.querySelector('a.whole-log').href"))
    _wait_for(lambda: "about to fail on" in _text(browser, "body"), "the attempt's whole output")
    assert _text(browser, "body").startswith("map task starting\nWARNING chatty: a warning from logging")
    assert browser.execute_script("return document.querySelectorAll('script').length") == 0  # plain text
    print("screenshots in", tmp_path)
