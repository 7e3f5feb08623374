"""`floatalk serve` as a real process on 127.0.0.1 with the demo weights: the web page in headless
Chromium (upload flow and live flow with a fake microphone), a bounded load test, and faults
(a client leaving mid-stream, a killed server). Loopback only; every wait is bounded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("mediapipe")
httpx = pytest.importorskip("httpx")

ASSETS = Path(__file__).parents[1] / "src" / "floatalk" / "assets"
PORTRAIT = ASSETS / "portraits" / "astronaut.jpg"
SPEECH = ASSETS / "speech"
HOST = "127.0.0.1"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def write_wav(path: Path, seconds: float, seed: int = 0) -> Path:
    """Speech-like noise (syllable-rate loudness), 16 kHz mono 16-bit."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(16000 * seconds)) / 16000
    x = (6000 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * rng.standard_normal(t.size)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(x.tobytes())
    return path


class Server:
    """`floatalk serve` in a subprocess; stopped (SIGINT, then SIGKILL) when done."""

    def __init__(self, work: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.work = work
        argv = [sys.executable, "-m", "floatalk", "serve", "--host", HOST, "--port", str(self.port)]
        argv += ["--work-dir", str(work), "--threads", "1", "-q", *extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("the server did not come up within 90 s")

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    srv = Server(work / "work", "--max-streams", "3", "--max-queue", "4")
    yield srv
    srv.stop()


def submit(url: str, speech: Path, options: dict) -> httpx.Response:
    with open(PORTRAIT, "rb") as image, open(speech, "rb") as sound:
        files = {"portrait": ("a.jpg", image, "image/jpeg"), "speech": (speech.name, sound, "audio/wav")}
        return httpx.post(url + "/jobs", files=files, data={"options": json.dumps(options)}, timeout=60)


def wait_job(url: str, job_id: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = httpx.get(f"{url}/jobs/{job_id}", timeout=10).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished in {timeout} s")


def stream_client(
    url: str, portrait_id: str, seconds: float, seed: int, leave_after: int | None = None
) -> dict:
    """One WebSocket client pushing PCM at up to 4x real time; what came back."""
    from websockets.sync.client import connect

    rng = np.random.default_rng(seed)
    pcm = (5000 * rng.standard_normal(round(16000 * seconds))).astype("<i2").tobytes()
    frames, message = [], None
    with connect(url.replace("http", "ws") + "/stream", open_timeout=20, close_timeout=5) as ws:
        ws.send(json.dumps({"type": "start", "portrait_id": portrait_id, "options": {"seed": seed}}))
        started = json.loads(ws.recv(timeout=60))
        if started["type"] != "started":
            return {"refused": started}
        for k, i in enumerate(range(0, len(pcm), 6400)):  # 200 ms chunks
            ws.send(pcm[i : i + 6400])
            time.sleep(0.05)
            if leave_after is not None and k == leave_after:
                return {"left": True}
        ws.send(json.dumps({"type": "end"}))
        while True:
            data = ws.recv(timeout=120)
            if isinstance(data, bytes):
                frames.append(int(np.frombuffer(data[:4], "<u4")[0]))
            else:
                message = json.loads(data)
                break
    return {"frames": frames, "end": message, "expected": -(-round(16000 * seconds) // 640)}


def test_load_mixed_jobs_and_streams_are_served_or_refused_cleanly(server, tmp_path):
    url = server.url
    portrait_id = httpx.post(
        url + "/portraits", files={"portrait": ("a.jpg", PORTRAIT.read_bytes())}, timeout=60
    )
    portrait_id = portrait_id.json()["id"]
    results: dict[str, dict] = {}

    def job_client(i: int) -> None:
        seconds = 1.0 + 0.4 * i  # different lengths: a mix-up between clients would show
        response = submit(url, write_wav(tmp_path / f"s{i}.wav", seconds, i), {"seed": i})
        if response.status_code == 429:
            results[f"job{i}"] = {"refused": response.json()["error"]}
            return
        assert response.status_code == 202, response.text
        job = wait_job(url, response.json()["id"])
        video = httpx.get(f"{url}/jobs/{job['id']}/video", timeout=30)
        results[f"job{i}"] = {
            "job": job,
            "bytes": len(video.content),
            "expected": -(-round(16000 * seconds) // 640),
        }

    def ws_client(i: int) -> None:
        results[f"stream{i}"] = stream_client(url, portrait_id, 1.5 + 0.5 * i, seed=10 + i)

    threads = [threading.Thread(target=job_client, args=(i,)) for i in range(5)]
    threads += [threading.Thread(target=ws_client, args=(i,)) for i in range(4)]
    began = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert len(results) == 9
    served = refused = 0
    for name, result in results.items():
        if "refused" in result:
            refused += 1
            text = json.dumps(result["refused"])
            assert "queue is full" in text or "try again later" in text, (name, result)
        elif name.startswith("job"):
            served += 1
            assert result["job"]["status"] == "done" and result["job"]["frames_total"] == result["expected"]
            assert result["bytes"] > 1000
        else:
            served += 1
            assert result["frames"] == list(range(result["expected"])), name
            assert result["end"] == {**result["end"], "type": "done", "frames": result["expected"]}
    assert served >= 5, results
    health = httpx.get(url + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["streams"] == 0
    print(f"load: {served} served, {refused} refused in {time.time() - began:.1f} s")


def test_a_client_that_leaves_mid_stream_frees_its_place(server):
    url = server.url
    portrait_id = httpx.post(
        url + "/portraits", files={"portrait": ("a.jpg", PORTRAIT.read_bytes())}, timeout=60
    )
    left = stream_client(url, portrait_id.json()["id"], 5.0, seed=1, leave_after=3)
    assert left == {"left": True}
    deadline = time.time() + 30
    while httpx.get(url + "/health", timeout=10).json()["streams"] and time.time() < deadline:
        time.sleep(0.2)
    assert httpx.get(url + "/health", timeout=10).json()["streams"] == 0


def test_a_killed_server_leaves_no_output_and_its_successor_cleans_up(tmp_path):
    work = tmp_path / "work"
    srv = Server(work)
    try:
        response = submit(srv.url, write_wav(tmp_path / "long.wav", 30.0), {"seed": 0})
        job_id = response.json()["id"]
        deadline = time.time() + 60
        while httpx.get(f"{srv.url}/jobs/{job_id}", timeout=10).json()["frames_done"] < 10:
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        srv.stop(kill=True)
    assert not list(work.rglob("video.mp4"))  # only a hidden .partial file can be there
    again = Server(work)
    try:
        assert not list((work / "jobs").iterdir())
    finally:
        again.stop()


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="needs Debian's chromium and chromium-driver")
def test_the_page_in_chromium_uploads_and_goes_live(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    speech = write_wav(tmp_path / "speech.wav", 2.0)
    mic = tmp_path / "mic.wav"
    shutil.copy(speech, mic)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1100,1500",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(server.url + "/")
        driver.find_element(By.ID, "portrait").send_keys(str(PORTRAIT))
        driver.find_element(By.ID, "speech").send_keys(str(speech))
        driver.find_element(By.ID, "generate").click()
        WebDriverWait(driver, 180).until(
            lambda d: d.execute_script("return document.body.dataset.job") == "done"
        )
        duration = WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(
                "const v = document.getElementById('result'); return v.readyState >= 1 ? v.duration : null"
            )
        )
        assert abs(duration - 2.0) < 0.15, duration
        assert driver.find_element(By.ID, "download").get_attribute("href").startswith("blob:")
        # live: the fake microphone plays the speech file in a loop
        driver.find_element(By.ID, "live-start").click()
        WebDriverWait(driver, 60).until(
            lambda d: (
                int(d.execute_script("return document.getElementById('live').dataset.frames || 0")) >= 10
            )
        )
        screenshot = os.environ.get("FLOATALK_PAGE_SCREENSHOT")
        if screenshot:
            driver.save_screenshot(screenshot)
        driver.find_element(By.ID, "live-stop").click()
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.body.dataset.live") == "done"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
