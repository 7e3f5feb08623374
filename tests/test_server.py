"""`floatalk serve` in process (FastAPI's TestClient, no socket): REST jobs, the WebSocket stream,
limits, keys and bad requests. Tiny random model; the real-server, browser and load tests are in
tests/test_server_live.py."""

from __future__ import annotations

import io
import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("mediapipe")
from fastapi.testclient import TestClient

from floatalk.server import ServerSettings, create_app
from floatalk.server.app import CLIENT_OPTIONS, parse_options
from test_streaming import _pipe

ASSETS = Path(__file__).parents[1] / "src" / "floatalk" / "assets"
PORTRAIT = (ASSETS / "portraits" / "astronaut.jpg").read_bytes()
KEY = "secret-key-123"


def wav_bytes(seconds: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = (3000 * rng.standard_normal(round(16000 * seconds))).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(x.tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pipe(one_thread):
    return _pipe("logmel")


@pytest.fixture
def server(pipe, tmp_path):
    settings = ServerSettings(
        work_dir=str(tmp_path / "work"), max_upload_bytes=2_000_000, max_audio_seconds=5
    )
    with TestClient(create_app(settings, pipe)) as client:
        yield client, tmp_path / "work"


def wait_done(client, job_id, timeout=120.0, headers=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=headers or {}).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def submit(client, speech=None, portrait=PORTRAIT, options=None, headers=None):
    files = {"speech": ("speech.wav", speech if speech is not None else wav_bytes(1.0), "audio/wav")}
    if portrait is not None:
        files["portrait"] = ("me.jpg", portrait, "image/jpeg")
    data = {"options": json.dumps(options if options is not None else {"seed": 1, "output_size": 64})}
    return client.post("/jobs", files=files, data=data, headers=headers or {})


def test_a_job_runs_to_a_playable_mp4_and_its_files_go_with_it(server):
    from floatalk.io.video_reader import read_video_info

    client, work = server
    assert client.get("/health").json()["status"] == "ok"
    response = submit(client)
    assert response.status_code == 202, response.text
    job = wait_done(client, response.json()["id"])
    assert job["status"] == "done" and job["progress"] == 1.0 and job["frames_total"] == 25
    video = client.get(f"/jobs/{job['id']}/video")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = work / "out.mp4"
    path.write_bytes(video.content)
    info = read_video_info(path)
    assert info["num_frames"] == 25 and info["width"] == 64
    assert sorted(p.name for p in (work / "jobs" / job["id"]).iterdir()) == ["video.mp4"]
    assert client.delete(f"/jobs/{job['id']}").json()["status"] == "cancelled"
    assert not (work / "jobs" / job["id"]).exists()
    assert client.get(f"/jobs/{job['id']}/video").status_code == 409
    assert "/jobs" in client.get("/openapi.json").json()["paths"]
    assert "floatalk" in client.get("/").text


@pytest.mark.parametrize(
    "case, status, words",
    [
        ("no portrait", 400, "portrait"),
        ("no face", 400, "face"),
        ("corrupt audio", 400, "speech"),
        ("oversized upload", 413, "limit"),
        ("too long speech", 400, "at most"),
        ("unknown option", 400, "unknown option"),
        ("bad option value", 400, "nfe"),
        ("options not JSON", 400, "JSON"),
        ("no speech field", 422, "speech"),
    ],
)
def test_bad_requests_get_clear_errors_and_leave_no_files(server, case, status, words):
    client, work = server
    blank = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (256, 256), (120, 160, 200)).save(blank, format="PNG")
    if case == "no portrait":
        response = submit(client, portrait=None)
    elif case == "no face":
        response = submit(client, portrait=blank.getvalue())
    elif case == "corrupt audio":
        response = submit(client, speech=b"RIFF\x00\x00not really a wave file" * 10)
    elif case == "oversized upload":
        response = submit(client, speech=b"\x00" * 2_100_000)
    elif case == "too long speech":
        response = submit(client, speech=wav_bytes(6.0))
    elif case == "unknown option":
        response = submit(client, options={"emotions": "happy"})
    elif case == "bad option value":
        response = submit(client, options={"nfe": 0})
    elif case == "options not JSON":
        response = client.post(
            "/jobs",
            files={"speech": ("s.wav", wav_bytes(0.5)), "portrait": ("p.jpg", PORTRAIT)},
            data={"options": "{emotion: happy"},
        )
    else:
        response = client.post("/jobs", files={"portrait": ("p.jpg", PORTRAIT)})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words.lower() in error.lower() and "\n" not in error
    jobs = work / "jobs"
    assert not jobs.exists() or list(jobs.iterdir()) == []


def test_the_api_key_guards_everything_but_health(pipe, tmp_path):
    settings = ServerSettings(work_dir=str(tmp_path / "w"), api_key=KEY)
    with TestClient(create_app(settings, pipe)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 401
        assert submit(client).status_code == 401
        assert submit(client, headers={"X-API-Key": "wrong-key-000"}).status_code == 401
        assert client.get("/?key=" + KEY).status_code == 200
        response = submit(client, headers={"X-API-Key": KEY})
        assert response.status_code == 202
        wait_done(client, response.json()["id"], headers={"X-API-Key": KEY})
        with client.websocket_connect("/stream") as ws:
            message = ws.receive_json()
            assert message["type"] == "error" and "key" in message["error"]


def test_a_full_queue_answers_429_and_cancel_stops_a_job(pipe, tmp_path):
    settings = ServerSettings(work_dir=str(tmp_path / "w"), max_queued_jobs=1, max_audio_seconds=30)
    with TestClient(create_app(settings, pipe)) as client:
        long = wav_bytes(20.0)
        first = submit(client, speech=long).json()["id"]  # running (or about to)
        deadline = time.time() + 30
        while client.get(f"/jobs/{first}").json()["status"] == "queued" and time.time() < deadline:
            time.sleep(0.05)
        second = submit(client, speech=long)
        assert second.status_code == 202  # waits in the queue
        third = submit(client, speech=long)
        assert third.status_code == 429 and "queue is full" in third.json()["error"]
        for job_id in (first, second.json()["id"]):
            assert client.delete(f"/jobs/{job_id}").status_code == 200
        for job_id in (first, second.json()["id"]):
            assert wait_done(client, job_id)["status"] == "cancelled"
        assert not list((tmp_path / "w" / "jobs").iterdir())
        assert client.get("/jobs/" + "0" * 32).status_code == 404
        assert client.get("/jobs/../../etc").status_code == 404


def test_a_websocket_stream_sends_every_frame_in_order(server, pipe):
    client, _ = server
    portrait_id = client.post("/portraits", files={"portrait": ("p.jpg", PORTRAIT)}).json()["id"]
    rng = np.random.default_rng(0)
    pcm = (3000 * rng.standard_normal(16000 * 2)).astype("<i2").tobytes()
    indices = []
    with client.websocket_connect("/stream") as ws:
        ws.send_json({"type": "start", "portrait_id": portrait_id, "options": {"seed": 0, "output_size": 64}})
        started = ws.receive_json()
        assert started["type"] == "started" and started["fps"] == 25 and started["size"] == 64
        for i in range(0, len(pcm), 3200):
            ws.send_bytes(pcm[i : i + 3200])
        ws.send_json({"type": "end"})
        while True:
            message = ws.receive()
            if message.get("bytes") is not None:
                data = message["bytes"]
                indices.append(int(np.frombuffer(data[:4], "<u4")[0]))
                assert data[4:6] == b"\xff\xd8"  # a JPEG
            else:
                done = json.loads(message["text"])
                break
    assert done["type"] == "done" and done["frames"] == 50
    assert indices == list(range(50))


def test_stream_errors_are_json_messages(server):
    client, _ = server
    with client.websocket_connect("/stream") as ws:
        ws.send_text("hello")
        assert "start" in ws.receive_json()["error"]
    with client.websocket_connect("/stream") as ws:
        ws.send_json({"type": "start", "portrait_id": "f" * 32})
        assert "unknown portrait" in ws.receive_json()["error"]
    with client.websocket_connect("/stream") as ws:
        ws.send_json({"type": "start", "portrait_id": "x", "options": {"bogus": 1}})
        assert "unknown option" in ws.receive_json()["error"]


def test_client_options_are_the_generate_options_minus_server_files():
    assert "pose_from" not in CLIENT_OPTIONS and "emotion" in CLIENT_OPTIONS
    assert parse_options('{"motion_edits": {"3": 0.5}}').motion_edits == ((3, 0.5),)
    assert parse_options(None).emotion == "auto"
