"""End-to-end tests of the Gradio demos in a real headless Chromium.

Each test starts a demo as a user would (``python -m demos.<app>``) on 127.0.0.1 with a tiny
offline model from tests/reference/cases, drives the page with Playwright (system Chromium,
nothing downloaded), and checks that the generated audio is a playable WAV file.
"""
import io
import os
import socket
import subprocess
import sys
import time
import typing as tp
import urllib.request
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / 'tests' / 'reference' / 'cases'
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']
# Generous: on a loaded CI machine importing gradio and torch alone can take a minute.
START_TIMEOUT = 180.0
GENERATE_TIMEOUT_MS = 180_000
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _wait_until_serving(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f'demo exited with code {proc.returncode}:\n{log.read_text()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f'demo did not answer on {url} within {START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}')


@pytest.fixture
def serve_demo(tmp_path: Path) -> tp.Iterator[tp.Callable[[str, Path], str]]:
    """Start `python -m <module> --model-path <case>` on a free port; yields a starter returning the URL."""
    procs: tp.List[subprocess.Popen] = []

    def start(module: str, model_dir: Path) -> str:
        port = _free_port()
        log = tmp_path / f'{module}.log'
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED='False', PYTHONUNBUFFERED='1',
                   GRADIO_TEMP_DIR=str(tmp_path / 'gradio'), OMP_NUM_THREADS='1')
        proc = subprocess.Popen(
            [sys.executable, '-m', module, '--listen', '127.0.0.1', '--server_port', str(port),
             '--model-path', str(model_dir), '--device', 'cpu'],
            cwd=ROOT, env=env, stdout=log.open('w'), stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f'http://127.0.0.1:{port}/'
        _wait_until_serving(proc, url, log)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def page() -> tp.Iterator[tp.Any]:
    """A fresh page of a headless system Chromium."""
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), 'install the system Chromium: apt-get install chromium chromium-driver'
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _open(page: tp.Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector('#description textarea', timeout=30_000)


def _generate_and_check_audio(page: tp.Any, prompt: str, sample_rate: int, seconds: float) -> None:
    """Type a prompt, press Generate, then check the <audio> element and the WAV it plays."""
    page.fill('#description textarea', prompt)
    page.click('#generate')
    audio = page.wait_for_selector('#output-audio audio[src]', state='attached', timeout=GENERATE_TIMEOUT_MS)
    # Playable: the browser decoded the source's header and knows its duration.
    page.wait_for_function(
        '(el) => el.readyState >= 1 && isFinite(el.duration) && el.duration > 0', arg=audio,
        timeout=15_000)
    duration = audio.evaluate('(el) => el.duration')
    assert abs(duration - seconds) < 0.1, duration
    # The bytes behind the player's source are a WAV file.
    head = audio.evaluate(
        '''async (el) => {
               const buf = await (await fetch(el.src)).arrayBuffer();
               return Array.from(new Uint8Array(buf.slice(0, 12)));
           }''')
    assert bytes(head[:4]) == b'RIFF' and bytes(head[8:12]) == b'WAVE', head
    # The file offered for download is the same audio, served by the demo.
    href = page.get_attribute('#output-audio a[download]', 'href')
    assert href and href.endswith('.wav'), href
    with urllib.request.urlopen(href, timeout=10) as response:
        data = response.read()
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getframerate() == sample_rate
        assert abs(wav.getnframes() / sample_rate - seconds) < 0.1
    # The waveform picture is shown next to the player.
    page.wait_for_selector('#waveform img', timeout=10_000)


def test_musicgen_app_generates_playable_audio(serve_demo, page):
    url = serve_demo('demos.musicgen_app', CASES / 'musicgen_text_tiny')
    _open(page, url)
    # One second keeps the tiny model fast; the slider's box commits on change.
    box = page.locator('#duration input[type=number]')
    box.fill('1')
    box.press('Enter')
    _generate_and_check_audio(page, 'warm lo-fi piano with soft drums', 32000, 1.0)


def test_magnet_app_generates_playable_audio(serve_demo, page):
    url = serve_demo('demos.magnet_app', CASES / 'magnet_tiny')
    # magnet_tiny was trained on 1-second segments: MAGNeT always generates that length.
    _open(page, url)
    _generate_and_check_audio(page, 'disco beat with funky bass', 32000, 1.0)


def test_two_simultaneous_requests_from_two_pages(serve_demo, page):
    """Two users press Generate at once: both requests queue and each page gets its own sample."""
    url = serve_demo('demos.musicgen_app', CASES / 'musicgen_text_tiny')
    other = page.context.browser.new_page()  # a second user: its own context
    pages = [(page, '1'), (other, '1.5')]
    for p, seconds in pages:
        _open(p, url)
        box = p.locator('#duration input[type=number]')
        box.fill(seconds)
        box.press('Enter')
        p.fill('#description textarea', f'prompt lasting {seconds} s')
    for p, _ in pages:
        p.click('#generate')
    for p, seconds in pages:
        audio = p.wait_for_selector('#output-audio audio[src]', state='attached', timeout=2 * GENERATE_TIMEOUT_MS)
        p.wait_for_function('(el) => el.readyState >= 1 && isFinite(el.duration) && el.duration > 0', arg=audio,
                            timeout=15_000)
        assert abs(audio.evaluate('(el) => el.duration') - float(seconds)) < 0.1
    sources = [p.get_attribute('#output-audio a[download]', 'href') for p, _ in pages]
    assert sources[0] != sources[1]
