"""The dashboard (/, /dashboard) in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) against a real `fastserve serve`: the page loads and shows the queues, a request sent from
its chat box streams its answer and shows up in the queue view, the queue view follows a load of
concurrent requests from the openai client, and with --api-key the page asks for the key. Screenshots go
to docs/img/dashboard*.png (README). Skipped only when chromium, chromedriver or selenium is missing
(scripts/setup.sh installs them)."""
import os
import pathlib
import shutil
import threading
import time

import openai
import pytest
import requests

from conftest import ROOT, ServerProcess

# FASTSERVE_SCREENSHOT_DIR: elsewhere (scripts/asan_e2e.sh keeps docs/img as the Release run left it).
IMG = pathlib.Path(os.environ.get("FASTSERVE_SCREENSHOT_DIR", ROOT / "docs" / "img"))


def _chromium_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (pathlib.Path("/usr/lib/chromium/chromedriver").exists()
                                              and "/usr/lib/chromium/chromedriver")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = _chromium_paths()
    if not chromium or not chromedriver:
        pytest.skip("chromium / chromium-driver not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium not installed (pip install -r requirements-test.txt)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1600,1100", "--hide-scrollbars"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def dash_server(fastserve_bin, default_model, tmp_path_factory):
    """A small batch (4 sequences) and a small device pool, so that a load queues, preempts and swaps."""
    log = tmp_path_factory.mktemp("dash") / "server.log"
    s = ServerProcess(fastserve_bin, default_model, log, "--threads", "2", "--max-num-seqs", "4",
                      "--device-kv-blocks", "40", "--host-kv-blocks", "400")
    yield s
    s.stop()


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def text_of(driver, element_id):
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def queue_jobs(driver):
    """[(level, request id, state)] of every job card on the page."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#queues .queue')).flatMap(q =>
            Array.from(q.querySelectorAll('.job')).map(j => [parseInt(q.dataset.level), j.dataset.requestId,
                                                              j.dataset.state]));""")


def open_dashboard(driver, url):
    driver.get(url + "/dashboard")
    wait_for(lambda: text_of(driver, "status") == "live", 20, "the page to poll the state endpoint")


def test_endpoints(dash_server):
    r = requests.get(dash_server.url + "/", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "<script>" in r.text and "http://" not in r.text.replace("http://www.w3.org", "")  # no CDN
    assert requests.get(dash_server.url + "/dashboard", timeout=10).text == r.text
    st = wait_for(lambda: (lambda j: j["ready"] and j)(
        requests.get(dash_server.url + "/v1/scheduler/state", timeout=10).json()), 10, "the first snapshot")
    assert st["object"] == "scheduler.state" and st["policy"] == "skip-join-mlfq"
    assert st["kv"]["device"]["total_blocks"] == 40 and st["kv"]["host"]["total_blocks"] == 400
    assert requests.post(dash_server.url + "/v1/scheduler/state", timeout=10).status_code == 405


def test_page_shows_queues_and_chat_streams(browser, dash_server):
    open_dashboard(browser, dash_server.url)
    levels = browser.execute_script("return document.querySelectorAll('#queues .queue').length")
    assert levels >= 4
    assert text_of(browser, "policy") == "skip-join-mlfq"
    IMG.mkdir(parents=True, exist_ok=True)

    browser.find_element("id", "chat-input").clear()
    browser.find_element("id", "chat-input").send_keys("Tell me a long story about a lighthouse keeper.")
    max_tokens = browser.find_element("id", "chat-max-tokens")
    max_tokens.clear()
    max_tokens.send_keys("160")
    browser.find_element("id", "chat-send").click()

    # The answer streams: the output grows over several polls before the request ends.
    lengths, seen_in_queue, shot = [], False, False
    deadline = time.time() + 120
    while time.time() < deadline:
        out = text_of(browser, "chat-output")
        lengths.append(len(out))
        mine = browser.execute_script(
            "return document.querySelectorAll('#queues .job.mine, #batch .chip.mine').length")
        seen_in_queue = seen_in_queue or mine > 0
        if mine and len(out) > 40 and not shot:
            browser.save_screenshot(str(IMG / "dashboard_chat.png"))  # mid-stream, its card outlined
            shot = True
        if browser.execute_script("return document.getElementById('chat-output').dataset.done === '1'"):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the chat answer did not finish: " + text_of(browser, "chat-job"))
    final = text_of(browser, "chat-output")
    assert final.strip(), text_of(browser, "chat-job")
    partial = sorted({n for n in lengths if 0 < n < len(final)})
    assert len(partial) >= 3, f"the answer arrived in one piece, not streamed: {lengths[:50]}"
    assert seen_in_queue, "the chat request never showed in the queue view"
    assert "chatcmpl-" in text_of(browser, "chat-job")
    # Its latency is in the page's percentiles once it finished.
    wait_for(lambda: browser.execute_script(
        "return parseInt(document.getElementById('latency').rows[3].cells[1].textContent)") >= 1,
             10, "the JCT row to count the request")
    if not shot:
        browser.save_screenshot(str(IMG / "dashboard_chat.png"))


def test_queue_view_follows_concurrent_load(browser, dash_server):
    open_dashboard(browser, dash_server.url)
    client = openai.OpenAI(base_url=dash_server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    model = client.models.list().data[0].id
    errors, done = [], []

    def one(i):
        try:
            stream = client.completions.create(
                model=model, prompt=f"Request {i}: " + "describe the sea at night. " * (1 + i % 5),
                max_tokens=40 + 25 * (i % 6), temperature=0.8, seed=i, stream=True)
            for _ in stream:
                pass
            done.append(i)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    # A chat from the page joins the load.
    browser.find_element("id", "chat-input").clear()
    browser.find_element("id", "chat-input").send_keys("What do queues teach us about patience?")
    browser.find_element("id", "chat-send").click()

    snapshots, best = [], 0
    while any(t.is_alive() for t in threads):
        jobs = queue_jobs(browser)
        iterations = int(text_of(browser, "iterations"))
        snapshots.append((iterations, frozenset(r for _, r, _ in jobs), jobs))
        # The screenshot for the README: the busiest view (most states and levels at once).
        score = len({st for _, _, st in jobs}) * 10 + len({lvl for lvl, _, _ in jobs}) * 3 + min(len(jobs), 12)
        if len(jobs) >= 6 and score > best:
            browser.save_screenshot(str(IMG / "dashboard.png"))
            best = score
        time.sleep(0.25)
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(done) == 16

    ids_seen = set().union(*(s[1] for s in snapshots))
    assert len(ids_seen) >= 12, f"the queue view showed only {len(ids_seen)} requests"
    assert max(len(s[2]) for s in snapshots) >= 8, "never more than a handful of jobs in the queues at once"
    assert len({s[1] for s in snapshots}) >= 5, "the queue view did not change while the load ran"
    assert snapshots[-1][0] > snapshots[0][0], "the iteration counter did not move"
    states = {state for s in snapshots for _, _, state in s[2]}
    assert "running" in states and states & {"waiting", "preempted", "offloaded"}, states
    levels = {lvl for s in snapshots for lvl, _, _ in s[2]}
    assert len(levels) >= 2, f"jobs never left the first queue: {levels}"
    if not best:
        browser.save_screenshot(str(IMG / "dashboard.png"))

    # After the load: the queues empty out, percentiles and charts have data.
    wait_for(lambda: not queue_jobs(browser) and
             browser.execute_script("return !document.getElementById('chat-send').disabled"), 120,
             "the queues to drain")
    st = requests.get(dash_server.url + "/v1/scheduler/state", timeout=10).json()
    assert st["counters"]["finished"] >= 17
    assert st["latency"]["jct"]["count"] >= 17 and st["latency"]["ttft"]["p99_s"] > 0
    assert max(st["series"]["generation_tokens_per_s"]) > 0
    assert max(st["series"]["running"]) >= 4
    time.sleep(1.2)  # one more series point on the charts
    browser.save_screenshot(str(IMG / "dashboard_after.png"))


def test_api_key_prompt(browser, fastserve_bin, default_model, tmp_path):
    s = ServerProcess(fastserve_bin, default_model, tmp_path / "server.log", "--threads", "2",
                      "--api-key", "sesame")
    try:
        assert requests.get(s.url + "/v1/scheduler/state", timeout=10).status_code == 401
        ok = requests.get(s.url + "/v1/scheduler/state", headers={"Authorization": "Bearer sesame"}, timeout=10)
        assert ok.status_code == 200
        assert requests.get(s.url + "/dashboard", timeout=10).status_code == 200  # the page itself is public
        browser.get(s.url + "/dashboard")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        wait_for(lambda: browser.execute_script(
            "return document.getElementById('key-dialog').classList.contains('show')"), 20, "the key dialog")
        assert text_of(browser, "status") == "API key needed"
        browser.save_screenshot(str(IMG / "dashboard_key.png"))
        browser.find_element("id", "key-input").send_keys("sesame")
        browser.find_element("id", "key-save").click()
        wait_for(lambda: text_of(browser, "status") == "live", 20, "the page to use the key")
        assert browser.execute_script("return sessionStorage.getItem('fastserve_api_key')") == "sesame"
        # The chat box sends it too.
        browser.find_element("id", "chat-input").clear()
        browser.find_element("id", "chat-input").send_keys("Hi")
        browser.find_element("id", "chat-max-tokens").clear()
        browser.find_element("id", "chat-max-tokens").send_keys("8")
        browser.find_element("id", "chat-send").click()
        wait_for(lambda: browser.execute_script(
            "return document.getElementById('chat-output').dataset.done === '1'"), 60,
                 "the chat answer: " + text_of(browser, "chat-job"))
        assert "chatcmpl-" in text_of(browser, "chat-job")
    finally:
        assert s.stop() == 0
