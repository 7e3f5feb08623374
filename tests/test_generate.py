"""`floatalk generate` end to end on a tiny model: output file, repeatability, controls, bad input."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import randomize_
from floatalk.checkpoint import save_model
from floatalk.cli import main as cli_main
from floatalk.config import preset
from floatalk.generate import GenerateOptions, load_motion_file
from floatalk.io import read_video_info
from floatalk.models.float_model import FloatModel
from floatalk.pipeline import FloatPipeline


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    torch.manual_seed(0)
    model = FloatModel(preset("tiny"))
    randomize_(model.fmt, 1)
    randomize_(model.audio_encoder.audio_projection, 2)
    save_model(model, tmp / "weights")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(tmp / "face.png")
    sr = 22050
    t = np.arange(int(sr * 2.3)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    with wave.open(str(tmp / "speech.wav"), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes((np.repeat(x[:, None], 2, 1) * 32767).astype("<i2").tobytes())
    return tmp


def run(files, *extra, out="out.mp4"):
    args = [
        "generate",
        "--image",
        str(files / "face.png"),
        "--audio",
        str(files / "speech.wav"),
        "--weights",
        str(files / "weights"),
        "--no-crop",
        "-q",
        "-o",
        str(files / out),
        *extra,
    ]
    return cli_main(args)


def test_generate_writes_a_playable_mp4_with_audio(files, capsys):
    assert run(files, "--seed", "1", "--save-motion", str(files / "m1.safetensors")) == 0
    info = read_video_info(files / "out.mp4")
    assert info["num_frames"] == 58  # ceil(2.3 s * 25)
    assert info["fps"] == 25 and info["has_audio"]
    assert abs(info["audio_declared_duration"] - 2.3) < 1e-3
    assert "58 frames" in capsys.readouterr().out
    assert load_motion_file(files / "m1.safetensors").shape == (58, 32)


def test_seed_makes_runs_repeatable(files):
    run(files, "--seed", "1", "--save-motion", str(files / "a.safetensors"), out="a.mp4")
    run(files, "--seed", "1", "--save-motion", str(files / "b.safetensors"), out="b.mp4")
    run(files, "--seed", "2", "--save-motion", str(files / "c.safetensors"), out="c.mp4")
    a, b, c = (load_motion_file(files / f"{n}.safetensors") for n in "abc")
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_saved_motion_re_renders_without_sampling(files):
    run(files, "--seed", "4", "--save-motion", str(files / "m.safetensors"), out="first.mp4")
    assert run(files, "--motion", str(files / "m.safetensors"), out="again.mp4") == 0
    assert read_video_info(files / "again.mp4")["num_frames"] == 58


def frames_of(pipe, files, **options):
    opts = GenerateOptions(crop=False, seed=5, **options)
    return np.concatenate(list(pipe.generate(str(files / "face.png"), str(files / "speech.wav"), opts)))


def test_controls_act_on_the_output(files):
    pipe = FloatPipeline.from_pretrained(files / "weights")
    base = frames_of(pipe, files)
    assert base.shape == (58, 32, 32, 3) and base.dtype == np.uint8
    # every control changes the video
    for options in (
        {"emotion": "happy"},
        {"audio_scale": 0.0},
        {"emotion_scale": 3.0},
        {"nfe": 4},
        {"solver": "midpoint"},
        {"motion_edits": ((1, 2.0),)},
        {"motion_scale": 2.0},
    ):
        assert not np.array_equal(frames_of(pipe, files, **options), base), options
    # motion_scale 0 holds the source pose: every frame is the same
    still = frames_of(pipe, files, motion_scale=0.0)
    assert all(np.array_equal(still[0], f) for f in still[1:])


def test_without_guidance_the_speech_is_ignored(files):
    """g_a = g_e = 0 is the unconditional field: other speech gives the same first window.

    Later windows still see the previous window's speech features (the released model never drops
    them at inference), so only the first window is speech-independent.
    """
    pipe = FloatPipeline.from_pretrained(files / "weights")
    silent = np.zeros(int(16000 * 2.3), np.float32)
    speech = np.random.default_rng(1).normal(0, 0.2, silent.shape).astype(np.float32)
    opts = GenerateOptions(crop=False, seed=5, audio_scale=0.0, emotion_scale=0.0, emotion="neutral")
    image = str(files / "face.png")
    a = np.concatenate(list(pipe.generate(image, silent, opts)))
    b = np.concatenate(list(pipe.generate(image, speech, opts)))
    first = pipe.config.fmt.clip_frames
    assert np.array_equal(a[:first], b[:first])
    assert not np.array_equal(a[first:], b[first:])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--image": "missing.png"}, "does not exist"),
        ({"--audio": "face.png"}, "no audio track"),
        ({"--nfe": "0"}, "nfe must be"),
        ({"--emotion": "joy"}, "unknown emotion"),
        ({"--audio-scale": "-1"}, "audio-scale must be"),
        ({"--emotion-scale": "nan"}, "emotion-scale must be"),
        ({"--solver": "rk4"}, "unknown solver"),
        ({"-o": "nodir/out.mp4"}, "does not exist"),
        ({"--weights": "nope"}, "does not exist"),
        ({"--edit-motion": "9=1"}, "out of range"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_file(files, capsys, change, message):
    args = {"--image": "face.png", "--audio": "speech.wav", "--weights": "weights", "-o": "bad.mp4"}
    extra = []
    for key, value in change.items():
        if key in args:
            args[key] = value
        else:
            extra += [key, value]
    argv = ["generate", "--no-crop", "-q", *extra]
    for key, value in args.items():
        argv += [key, str(files / value)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("floatalk: error:") and err.count("\n") == 1 and message in err
    assert not (files / "bad.mp4").exists()


def test_empty_and_zero_sample_audio(files, capsys):
    (files / "empty.wav").write_bytes(b"")
    with wave.open(str(files / "nosamples.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
    for name in ("empty.wav", "nosamples.wav"):
        argv = [
            "generate",
            "--no-crop",
            "-q",
            "--image",
            str(files / "face.png"),
            "--audio",
            str(files / name),
            "--weights",
            str(files / "weights"),
            "-o",
            str(files / "bad.mp4"),
        ]
        assert cli_main(argv) == 2
        assert capsys.readouterr().err.count("\n") == 1
        assert not (files / "bad.mp4").exists()
