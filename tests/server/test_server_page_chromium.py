"""The page at `/` in a real headless Chromium (Selenium driving Debian's chromium and
chromium-driver) against a real `fluxmusic serve` on the tiny bundle: sign in with the login
link, make a clip, watch its progress, play it, select a region on its waveform with the mouse
and repaint it, delete the repaint; no console error and no request to another origin on the
way; a refused value's sentence on the page.

Set FLUXMUSIC_PAGE_SCREENSHOT=PATH to also keep a screenshot of the page with the finished clip
(how docs/server-page.png is made); a plain run writes nothing outside its temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from installed import needs_script
from served import JOB_S, start, stopped

pytestmark = [pytest.mark.e2e, needs_script]

WAIT_S = 60  # the longest any one step in the browser may take (a job's wait: JOB_S)
POLL_S = 0.1
WINDOW = (1000, 1300)
CLIP = {"prompt": "a slow synth pad", "steps": "4", "duration": "1.0", "seed": "7"}

# Records each change of a job card's status and progress (the page keeps them as data-*
# attributes), so the test sees every update the event stream brought, however fast.
WATCH = """
window.seen = [];
new MutationObserver(function (changes) {
  changes.forEach(function (change) {
    var card = change.target;
    if (card.dataset && card.dataset.jobId) {
      window.seen.push([card.dataset.jobId, card.dataset.status,
                        Number(card.dataset.step), Number(card.dataset.steps)]);
    }
  });
}).observe(document.getElementById("jobs"), {subtree: true, attributes: true,
  attributeFilter: ["data-status", "data-step", "data-steps"]});
"""

# Loads the card's audio, then plays it muted: its duration, whether play() was allowed, and
# the error, if any.
PLAY = """
var done = arguments[arguments.length - 1];
var audio = document.querySelector('li[data-job-id="' + arguments[0] + '"] audio');
function play() {
  audio.muted = true;
  audio.play().then(
    function () { done({duration: audio.duration, playing: !audio.paused, error: null}); },
    function (e) { done({duration: audio.duration, playing: false, error: String(e)}); });
}
if (audio.readyState >= 1) { play(); } else {
  audio.addEventListener("loadedmetadata", play, {once: true});
  audio.addEventListener("error", function () {
    var code = audio.error && audio.error.code;
    done({duration: null, playing: false, error: "media error " + code});
  }, {once: true});
}
"""


def _tools():
    """chromium, chromedriver and selenium, or a skip that says which is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    driver = shutil.which("chromedriver")
    if driver is None:
        pytest.skip("chromedriver is not installed (Debian: apt-get install chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    return chromium, driver


@pytest.fixture(scope="module")
def page_server(tiny_bundle, tmp_path_factory):
    _tools()
    root = tmp_path_factory.mktemp("page")
    srv = start(tiny_bundle, root / "data", root / "home")
    try:
        yield srv
    finally:
        stopped(srv)


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium through chromedriver (the paths given: Selenium looks nothing up
    on the network), logging the console and every network request; always quit."""
    chromium, driver_path = _tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps",
        "--autoplay-policy=no-user-gesture-required", "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(WAIT_S)
        driver.set_script_timeout(WAIT_S)
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout: float = WAIT_S, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=POLL_S).until(condition, what)


def login_link(server) -> str:
    line = next(ln for ln in server.lines if ln.startswith("login link for a browser"))
    return line.rsplit(" ", 1)[1]


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def requested_urls(driver, first: str) -> list[str]:
    """Every URL the browser was asked for from the request for `first` on (what its own
    start page loaded before is not the page's), from ChromeDriver's performance log, and
    every resource the page's own timeline lists."""
    urls: list[str] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if urls or url == first:
                urls.append(url)
    assert urls, f"no request for {first} in the log"
    urls += driver.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
    )
    return urls


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def card(driver, job_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'li[data-job-id="{job_id}"]')


def card_status(driver, job_id: str) -> str | None:
    return driver.execute_script(
        "var c = document.querySelector('li[data-job-id=\"' + arguments[0] + '\"]');"
        "return c ? c.dataset.status : null;",
        job_id,
    )


def keep_screenshot(driver, card_element) -> None:
    """With FLUXMUSIC_PAGE_SCREENSHOT set: the page down to the clip's card, as a small PNG."""
    target = os.environ.get("FLUXMUSIC_PAGE_SCREENSHOT")
    if not target:
        return
    import io

    from PIL import Image

    driver.execute_script("window.scrollTo(0, 0)")
    bottom = int(card_element.rect["y"] + card_element.rect["height"] + 16)
    driver.set_window_size(WINDOW[0], max(WINDOW[1], bottom + 200))  # the whole card in view
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png()))
    driver.set_window_size(*WINDOW)
    shot = shot.crop((0, 0, shot.width, min(shot.height, bottom)))
    small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    small.save(Path(target), optimize=True)


def test_the_page_without_the_login_link_says_how_to_sign_in(page_server, browser):
    from selenium.webdriver.common.by import By

    browser.get(page_server.url + "/")
    notice = wait_for(browser, lambda d: d.find_element(By.ID, "signin").is_displayed() and
                      d.find_element(By.ID, "signin"), what="no sign-in notice")  # fmt: skip
    assert "login link" in notice.text
    assert not browser.find_element(By.ID, "generate").is_enabled()
    errors = console_errors(browser)  # the API refused the page: its one 401, and nothing else
    assert len(errors) == 1 and "/v1/engine" in errors[0] and "401" in errors[0], errors


def test_the_page_makes_plays_and_repaints_a_clip(page_server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    api = page_server.client()
    by_id = browser.find_element

    # 1. The login link signs the browser in (the cookie) and lands on the page, live.
    link = login_link(page_server)
    browser.get(link)
    assert urlsplit(browser.current_url).path == "/"
    wait_for(browser, lambda d: d.find_element(By.ID, "live").text == "live", what="no stream")
    assert by_id(By.ID, "signin").is_displayed() is False
    browser.execute_script(WATCH)

    # 2. A prompt with a few steps, submitted with the form.
    for name, value in CLIP.items():
        by_id(By.ID, name).send_keys(value)
    by_id(By.ID, "generate").click()
    status = wait_for(browser, lambda d: d.find_element(By.ID, "make-status").text,
                      what="no answer to the submit")  # fmt: skip
    made = [j for j in api.get("/v1/jobs").json()["jobs"] if j["command"] == "generate"]
    assert len(made) == 1 and made[0]["id"][:8] in status
    job_id = made[0]["id"]
    assert made[0]["request"]["steps"] == 4 and made[0]["request"]["seed"] == 7

    # 3. Its card follows the event stream to success; the progress only ever grows.
    wait_for(browser, lambda d: card_status(d, job_id) in ("succeeded", "failed"), JOB_S,
             "the job did not finish")  # fmt: skip
    assert card_status(browser, job_id) == "succeeded", api.job(job_id)
    seen = [s for s in browser.execute_script("return window.seen") if s[0] == job_id]
    assert seen[0][1] in ("queued", "running") and seen[-1][1:] == ["succeeded", 4, 4]
    steps = [s[2] for s in seen]
    assert steps == sorted(steps) and steps[0] < 4
    meter = card(browser, job_id).find_element(By.TAG_NAME, "progress")
    assert float(meter.get_attribute("value")) == float(meter.get_attribute("max"))

    # 4. The player: its duration is the clip's, and it plays.
    played = browser.execute_async_script(PLAY, job_id)
    assert played["error"] is None and played["playing"], played
    assert abs(played["duration"] - 1.0) < 0.05, played
    wait_for(browser, lambda d: d.execute_script(
        "return document.querySelector('li[data-job-id=\"' + arguments[0] + '\"] audio')"
        ".currentTime > 0", job_id), what="the audio never advanced")  # fmt: skip

    # 5. The spectrogram, the record and the download link.
    clip = card(browser, job_id)
    image = clip.find_element(By.CSS_SELECTOR, "img.job-spectrogram")
    wait_for(browser, lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", image) == 720,
        what="no spectrogram")  # fmt: skip
    record = clip.find_element(By.CSS_SELECTOR, "dl.job-record").text
    assert "Seed\n7" in record and "Steps\n4" in record and CLIP["prompt"] in record
    download = clip.find_element(By.CSS_SELECTOR, "a.job-download")
    assert download.get_attribute("href") == f"{page_server.url}/v1/jobs/{job_id}/audio"

    # 6. A region dragged across the middle half of the waveform, then repainted.
    wave = clip.find_element(By.CSS_SELECTOR, "canvas.job-wave")
    wait_for(browser, lambda d: clip.find_element(By.CSS_SELECTOR, ".region-start")
             .get_attribute("max"), what="no waveform")  # fmt: skip
    width = wave.size["width"]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", wave)
    drag = ActionChains(browser).move_to_element_with_offset(wave, -width // 4, 0)
    drag.click_and_hold().move_by_offset(width // 4, 0).move_by_offset(width // 4, 0)
    drag.release().perform()
    start_s = float(clip.find_element(By.CSS_SELECTOR, ".region-start").get_attribute("value"))
    end_s = float(clip.find_element(By.CSS_SELECTOR, ".region-end").get_attribute("value"))
    assert abs(start_s - 0.25) < 0.03 and abs(end_s - 0.75) < 0.03, (start_s, end_s)
    keep_screenshot(browser, clip)
    clip.find_element(By.CSS_SELECTOR, 'button[data-action="repaint"]').click()

    def repaint_job():
        jobs = [j for j in api.get("/v1/jobs").json()["jobs"] if j["command"] == "repaint"]
        return jobs[0] if jobs else None

    repaint = wait_for(browser, lambda d: repaint_job(), what="no repaint job")
    assert repaint["request"]["input"] == f"job:{job_id}"
    assert repaint["request"]["region"] == [f"{start_s:.2f}:{end_s:.2f}"]
    wait_for(browser, lambda d: card_status(d, repaint["id"]) in ("succeeded", "failed"), JOB_S,
             "the repaint did not finish")  # fmt: skip
    assert card_status(browser, repaint["id"]) == "succeeded", api.job(repaint["id"])
    command = card(browser, repaint["id"]).find_element(By.CSS_SELECTOR, ".job-command")
    title = command.get_attribute("textContent")  # as written; the style shows it upper-case
    assert title == f"repaint of job {job_id[:8]}"

    # 7. Delete the repaint (a second click confirms): its card goes, and the job with it.
    painted = card(browser, repaint["id"])
    wait_for(browser, lambda d: painted.find_element(By.CSS_SELECTOR, ".region-start")
             .get_attribute("max"), what="the repaint's waveform never came")  # fmt: skip
    remove = painted.find_element(By.CSS_SELECTOR, ".job-remove")
    remove.click()
    assert remove.text == "Really delete?" and api.job(repaint["id"])["status"] == "succeeded"
    remove.click()
    wait_for(browser, lambda d: card_status(d, repaint["id"]) is None, what="the card stayed")
    assert api.get(f"/v1/jobs/{repaint['id']}").status == 404

    # 8. Nothing went wrong in the console, and nothing was asked of another origin.
    assert console_errors(browser) == []
    urls = requested_urls(browser, link)
    assert any(u.endswith("/v1/events") for u in urls) and any("/audio" in u for u in urls)
    # (data: URLs go nowhere: Chromium's own media controls draw their icons with them)
    assert {origin(u) for u in urls if not u.startswith("data:")} == {page_server.url}, urls

    # 9. A value the server refuses: its sentence on the page (and the one 422 in the console).
    steps_input = by_id(By.ID, "steps")
    steps_input.clear()
    steps_input.send_keys("0")
    by_id(By.ID, "generate").click()
    said = wait_for(browser, lambda d: d.find_element(By.ID, "make-error").text,
                    what="no error shown")  # fmt: skip
    refused = api.request("POST", "/v1/jobs", json_body={"command": "generate", "prompt": "x",
                                                         "steps": 0})  # fmt: skip
    assert refused.status == 422 and said == refused.json()["error"]
    errors = console_errors(browser)
    assert len(errors) == 1 and "422" in errors[0], errors
