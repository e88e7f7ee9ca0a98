"""The page of seq2seq.serve in a real browser: a real server (subprocess) and headless Chromium (Playwright).

Needs the `playwright` Python package and a system Chromium (Debian's `chromium` package; .ci/run installs
it). Without them the test is skipped, saying what is missing; Playwright's own browser download is not used.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import REPO
from .test_serve import tiny_run

pytestmark = pytest.mark.slow  # starts a server and a browser

SENTENCE = "Die Katze sieht den Hund."


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium's path, or a skip that names what is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[dev]')")
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium found on PATH (Debian: apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(chromium, tmp_path_factory) -> Iterator[str]:
    """`python -m seq2seq.serve RUN --port P` on the loopback interface; yields its base URL."""
    folder = tmp_path_factory.mktemp("serve")
    run, port = tiny_run(folder / "run", cell="gru"), free_port()
    log = (folder / "server.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "seq2seq.serve", str(run), "--port", str(port), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the server did not answer /health within 90 s"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_the_page_translates_and_draws_one_heatmap_row_per_output_piece(chromium, server, tmp_path):
    from playwright.sync_api import sync_playwright

    expected = post_json(server + "/translate", {"text": [SENTENCE], "beam_size": 1, "attention": True})
    hypothesis = expected["translations"][0]["hypotheses"][0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_function("document.getElementById('model-info').textContent.includes('→')")
            page.fill("#source", SENTENCE)
            page.click("#translate")
            page.wait_for_selector("#heatmap tbody tr", timeout=30_000)
            assert page.inner_text("#translations .hyp-text") == hypothesis["text"]
            rows = page.locator("#heatmap tbody tr")
            assert rows.count() == len(hypothesis["attention"]["output_pieces"]) >= 1
            assert rows.nth(0).locator("td").count() == len(hypothesis["attention"]["source_pieces"])
            header = page.locator("#heatmap thead th").all_inner_texts()[1:]
            assert header == hypothesis["attention"]["source_pieces"]
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

            page.fill("#beam-size", "1")  # three hypotheses with beam 1: the page widens the beam, as translate does
            page.fill("#nbest", "3")
            page.click("#translate")
            page.wait_for_function("document.querySelectorAll('#translations .hypothesis').length === 3")
            assert page.input_value("#beam-size") == "3" and page.locator("#error").is_hidden()

            page.fill("#source", "   ")  # nothing to translate: the page asks for a sentence, sends nothing
            page.click("#translate")
            page.wait_for_selector("#error:not([hidden])")
            assert "Type or paste a sentence" in page.inner_text("#error")

            page.fill("#source", SENTENCE)
            page.fill("#nbest", "1")
            page.fill("#beam-size", "99")  # a refusal is shown, not a crash
            page.click("#translate")
            page.wait_for_selector("#error:not([hidden])")
            assert "beam_size must be between 1 and 16" in page.inner_text("#error")

            page.fill("#beam-size", "3")  # required terms: in every translation, marked
            page.fill("#terms", "dog; the cat")
            page.click("#translate")
            page.wait_for_selector("#translations mark.term")
            assert set(page.locator("#translations mark.term").all_inner_texts()) == {"dog", "the cat"}
            assert page.locator("#error").is_hidden()
        finally:
            browser.close()
