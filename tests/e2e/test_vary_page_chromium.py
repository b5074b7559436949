"""The `vary` page in headless Chromium: loads offline, no console errors, every clip playable."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytestmark = pytest.mark.e2e

# Injected at the top of <head> (the page itself has no scripts): records every console error
# and failed resource, then, once the page has loaded, waits for each <audio> to read its
# metadata (or fail) and writes the findings into the DOM for --dump-dom to print.
PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target;
    errors.push(t && t !== window ? "resource " + (t.currentSrc || t.src || t.tagName)
                                  : "script " + e.message);
  }, true);
  var original = console.error;
  console.error = function () {
    errors.push("console " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var audios = Array.prototype.slice.call(document.querySelectorAll("audio"));
    Promise.all(audios.map(function (a) {
      return new Promise(function (resolve) {
        function done() {
          var s = a.querySelector("source");
          resolve({src: a.currentSrc, ready: a.readyState, duration: a.duration,
                   error: a.error && a.error.code, can: s ? a.canPlayType(s.type) : ""});
        }
        if (a.readyState >= 1 || a.error) { done(); return; }
        a.addEventListener("loadedmetadata", done);
        a.addEventListener("error", done, true);
        setTimeout(done, 8000);
      });
    })).then(function (audio) {
      var images = Array.prototype.map.call(document.images, function (i) {
        return {src: i.src, width: i.naturalWidth};
      });
      var pre = document.createElement("pre");
      pre.id = "probe";
      pre.textContent = JSON.stringify({audio: audio, images: images, errors: errors});
      document.body.appendChild(pre);
    });
  });
})();
</script>"""

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom",
]  # fmt: skip


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")


def test_vary_page_plays_offline_in_chromium(tiny_bundle, tmp_path, monkeypatch, capsys):
    browser = _chromium()
    from fluxmusic_cli.cli.app import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv",
        ["fluxmusic", "vary", "a quiet synth pad", "-o", "page", "--seeds", "1,2",
         "--guidance", "2,7", "--steps", "2", "--duration", "0.48", "--device", "cpu",
         "--dtype", "fp32", "--quiet", *tiny_bundle.cli_args()],
    )  # fmt: skip
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    folder = tmp_path / "page"
    page = (folder / "index.html").read_text()
    probe = folder / "probe.html"  # beside index.html, so the same relative links resolve
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")

    proc = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", probe.as_uri()],
        capture_output=True, timeout=120,
    )  # fmt: skip
    dom = proc.stdout.decode("utf-8", "replace")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"no probe result; chromium said: {proc.stderr.decode()[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))

    assert result["errors"] == []
    console = [ln for ln in proc.stderr.decode().splitlines() if ":CONSOLE" in ln]
    assert console == []
    assert len(result["audio"]) == 4
    for audio in result["audio"]:
        assert audio["error"] is None and audio["ready"] >= 1, audio
        assert audio["can"] in ("maybe", "probably"), audio
        assert abs(audio["duration"] - 0.48) < 0.01, audio
        assert Path(unquote(urlparse(audio["src"]).path)).parent == folder
    assert len(result["images"]) == 4 and all(i["width"] == 320 for i in result["images"])
