"""`floatalk generate` end to end on a tiny model: output file, repeatability, controls, bad input."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import randomize_
from floatalk.cli import main as cli_main
from floatalk.config import preset
from floatalk.io import read_video_info
from floatalk.io.latents import load_motion_file
from floatalk.models.float_model import FloatModel
from floatalk.options import GenerateOptions
from floatalk.pipeline import FloatPipeline
from floatalk.weights import save_model


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


def run(files, *extra, out="out.mp4", size="32"):
    """`floatalk generate` on the tiny model; at its own 32² unless `size` (None: the default size)."""
    sized = ["--size", size] if size is not None and "--size" not in extra else []
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
        *sized,
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


def test_the_video_keeps_the_inputs_sound_and_logs_plain_progress(files, capsys):
    """22.05 kHz stereo in: stereo out at 44.1 kHz (a whole factor up, so AAC's padded last frame
    stays < 25 ms), as long as the input; off a terminal, progress is a few plain lines."""
    argv = ["generate", "--image", str(files / "face.png"), "--audio", str(files / "speech.wav")]
    argv += ["--weights", str(files / "weights"), "--no-crop", "--seed", "3", "-o", str(files / "sound.mp4")]
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and 1 <= len(err.splitlines()) <= 11 and "generating: 58/58 frames" in err
    info = read_video_info(files / "sound.mp4")
    assert info["audio_sample_rate"] == 44100 and info["audio_channels"] == 2
    seconds = int(22050 * 2.3) / 22050
    assert abs(info["audio_declared_duration"] - seconds) < 1e-4
    assert abs(info["audio_duration"] - seconds) <= 0.025  # also for players ignoring the edit list


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
    opts = GenerateOptions(crop=False, seed=5, **{"output_size": 32, **options})
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


def test_zero_audio_makes_the_motion_independent_of_the_speech(files):
    """zero_audio samples with the null speech condition in every window: any speech of the same
    length gives the same latents for the same seed (and a fixed emotion), unlike normal sampling."""
    pipe = FloatPipeline.from_pretrained(files / "weights")
    n = int(16000 * 1.5)
    noise = np.random.default_rng(1).normal(0, 0.2, n).astype(np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)

    def motion(speech: np.ndarray, zero_audio: bool) -> torch.Tensor:
        opts = GenerateOptions(crop=False, seed=5, nfe=2, emotion="neutral", zero_audio=zero_audio)
        got = []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for _ in pipe.generate(str(files / "face.png"), speech, opts, on_motion=got.append):
                pass
        finally:
            torch.set_num_threads(threads)
        return got[0]

    zero_a, zero_b = motion(noise, True), motion(tone, True)
    assert zero_a.shape == (38, 32)  # ceil(1.5 s * 25), several windows
    assert torch.equal(zero_a, zero_b)
    speech_a, speech_b = motion(noise, False), motion(tone, False)
    assert not torch.allclose(speech_a, speech_b)
    assert not torch.allclose(zero_a, speech_a)


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


# --------------------------------------------------------------------------------------------------
# Valid edge cases
# --------------------------------------------------------------------------------------------------


def _write_wav(path, samples: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_all_silent_audio_renders_every_frame(files):
    _write_wav(files / "silence.wav", np.zeros(int(16000 * 1.7)))
    assert run(files, "--audio", str(files / "silence.wav"), "--seed", "0", out="silent.mp4") == 0
    info = read_video_info(files / "silent.mp4")
    assert info["num_frames"] == 43 and abs(info["audio_duration"] - 1.7) < 0.03  # ceil(1.7 * 25)


@pytest.mark.parametrize("samples", [1, 100, 639])
def test_clip_shorter_than_one_frame_gives_one_frame(files, samples):
    _write_wav(files / "blip.wav", 0.3 * np.sin(np.arange(samples) * 0.3))
    assert run(files, "--audio", str(files / "blip.wav"), "--seed", "0", out="blip.mp4") == 0
    assert read_video_info(files / "blip.mp4")["num_frames"] == 1


def _astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


@pytest.fixture
def needs_face_detector():
    from floatalk.face import is_available

    if not is_available():
        pytest.skip("face detector (the [face] extra) not installed")


@pytest.mark.parametrize("case", ["4000x3000 photo", "64x64 face"])
def test_huge_photo_and_tiny_face_are_cropped(files, needs_face_detector, case):
    face = Image.fromarray(_astronaut())
    if case == "64x64 face":
        photo = face.crop((150, 40, 300, 190)).resize((64, 64), Image.LANCZOS)
    else:
        photo = Image.new("RGB", (4000, 3000), (90, 120, 150))
        photo.paste(face.resize((1400, 1400), Image.LANCZOS), (1800, 700))
    photo.save(files / "photo.jpg", quality=92)
    args = ["--image", str(files / "photo.jpg"), "--seed", "0", "--size", "32", "--crop-only"]
    assert (
        cli_main(
            [
                "generate",
                *args,
                "--audio",
                str(files / "speech.wav"),
                "--weights",
                str(files / "weights"),
                "-q",
                "-o",
                str(files / "photo.mp4"),
            ]
        )
        == 0
    )
    info = read_video_info(files / "photo.mp4")
    assert info["num_frames"] == 58 and (info["width"], info["height"]) == (32, 32)


# --------------------------------------------------------------------------------------------------
# More bad input
# --------------------------------------------------------------------------------------------------


def _generate_argv(files, image="face.png", weights="weights", *extra, crop=False):
    argv = ["generate", "-q", "--image", str(files / image), "--audio", str(files / "speech.wav")]
    argv += ["--weights", str(files / weights), "-o", str(files / "bad.mp4"), *extra]
    return argv + ([] if crop else ["--no-crop"])


def _expect_one_line_error(capsys, argv, message, files):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("floatalk: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not (files / "bad.mp4").exists()
    assert not [p for p in files.iterdir() if p.name.startswith(".bad.mp4")]  # no temporary left


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "could not be decoded")],
)
def test_corrupt_or_empty_image(files, capsys, content, message):
    (files / "broken.png").write_bytes(content)
    _expect_one_line_error(capsys, _generate_argv(files, "broken.png"), message, files)


def test_image_without_a_face_suggests_no_crop(files, capsys, needs_face_detector):
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(files / "wall.png")
    _expect_one_line_error(capsys, _generate_argv(files, "wall.png", crop=True), "--no-crop", files)


def test_weights_missing_a_component_or_with_wrong_shapes(files, capsys, tmp_path):
    import shutil

    broken = files / "weights-missing"
    shutil.copytree(files / "weights", broken, dirs_exist_ok=True)
    shutil.rmtree(broken / "fmt")
    _expect_one_line_error(capsys, _generate_argv(files, "face.png", "weights-missing"), "fmt", files)

    other = FloatModel(preset("tiny"))
    save_model(other, tmp_path / "other")
    mixed = files / "weights-mixed"
    shutil.copytree(files / "weights", mixed, dirs_exist_ok=True)
    from safetensors.torch import load_file, save_file

    state = load_file(str(mixed / "fmt" / "model.safetensors"))
    key = next(k for k, v in state.items() if v.dim() == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, str(mixed / "fmt" / "model.safetensors"))
    _expect_one_line_error(capsys, _generate_argv(files, "face.png", "weights-mixed"), "shape", files)


def test_noise_file_errors(files, capsys):
    from safetensors.torch import save_file

    save_file({"noise": torch.zeros(3, 32)}, str(files / "noise.safetensors"))
    _expect_one_line_error(
        capsys,
        _generate_argv(files, "face.png", "weights", "--noise", str(files / "noise.safetensors")),
        "noise must hold",
        files,
    )
    save_file({"other": torch.zeros(3, 32)}, str(files / "nonoise.safetensors"))
    _expect_one_line_error(
        capsys,
        _generate_argv(files, "face.png", "weights", "--noise", str(files / "nonoise.safetensors")),
        "no tensor named 'noise'",
        files,
    )


def test_given_noise_replaces_the_seed(files):
    """The same noise gives the same video whatever --seed says; other noise another video."""
    from safetensors.torch import save_file

    windows = -(-58 // 8) * 8  # ceil(T / L) * L with the tiny model's L = 8
    g = torch.Generator().manual_seed(3)
    save_file({"noise": torch.randn(windows, 32, generator=g)}, str(files / "n1.safetensors"))
    save_file({"noise": torch.randn(windows, 32, generator=g)}, str(files / "n2.safetensors"))
    for out, noise, seed in [("n1a", "n1", "1"), ("n1b", "n1", "2"), ("n2", "n2", "1")]:
        motion = str(files / f"{out}.safetensors")
        args = ["--noise", str(files / f"{noise}.safetensors"), "--seed", seed, "--save-motion", motion]
        assert run(files, *args, out=f"{out}.mp4") == 0
    from floatalk.io.latents import load_motion_file

    # compared on the sampled motion, which the frames follow exactly (the Python API's frames are
    # repeatable bit for bit; libx264's MP4 bytes are not always: about 1 encode in 8 differs)
    a, b, c = (load_motion_file(files / f"{name}.safetensors") for name in ("n1a", "n1b", "n2"))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_auto_emotion_without_emotion_model_says_so(files, capsys, tmp_path):
    save_model(FloatModel(preset("tiny"), with_emotion=False), tmp_path / "noemo")
    assert run(files, "--weights", str(tmp_path / "noemo"), "--seed", "0", out="noemo.mp4") == 0
    out = capsys.readouterr().out
    assert "emotion auto (neutral)" in out and "note: no speech-emotion model" in out


def test_size_resizes_the_output_frames(files, capsys):
    from floatalk.io import read_video_frames

    assert run(files, "--seed", "1", out="native.mp4") == 0
    assert run(files, "--seed", "1", "--size", "96", "--no-detail", out="big.mp4") == 0
    native = read_video_frames(files / "native.mp4")
    big = read_video_frames(files / "big.mp4")
    assert native.shape[1:3] == (32, 32) and big.shape == (native.shape[0], 96, 96, 3)
    # the same frames, enlarged: shrinking them back gives the native video up to codec noise
    small = np.stack([np.asarray(Image.fromarray(f).resize((32, 32), Image.Resampling.BOX)) for f in big])
    assert np.abs(small.astype(float) - native.astype(float)).mean() < 8
    # without --size a model smaller than 256² writes 256² frames, with the portrait's detail
    assert run(files, "--seed", "1", out="default.mp4", size=None) == 0
    assert read_video_info(files / "default.mp4")["width"] == 256
    capsys.readouterr()
    assert run(files, "--size", "8", out="bad.mp4") == 2
    assert "size must be an integer from 16 to 4096" in capsys.readouterr().err
    assert not (files / "bad.mp4").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": None}, "image array must be"),
        ({"audio": None}, "mono waveform"),
        ({"audio": np.zeros((800, 2))}, "mono waveform"),
        ({"audio": ["a"]}, "audio must be a path or a mono float waveform"),
        ({"audio": np.full(100, np.nan)}, "NaN or infinite"),
        ({"nfe": 2.5}, "nfe must be"),
        ({"bogus": 1}, "unknown generation option"),
        ({"emotion": 3}, "emotion must be"),
        ({"motion_edits": {99: 1.0}}, "out of range"),
        ({"motion_edits": 5}, "motion edits must be"),
        ({"crop": "no"}, "crop must be True or False"),
        ({"seed": 2**70}, "seed must be"),
        ({"output": "o.txt"}, "must end in .mp4"),
        ({"motion": torch.zeros(5, 3)}, "motion file must hold"),
        ({"noise": torch.zeros(5, 3)}, "noise must hold"),
    ],
)
def test_python_api_bad_input_raises_input_error_and_writes_nothing(files, change, message):
    from floatalk.errors import InputError

    pipe = FloatPipeline.from_pretrained(files / "weights")
    args = {"image": str(files / "face.png"), "audio": str(files / "speech.wav"), "output": files / "api.mp4"}
    kwargs = {"crop": False, "nfe": 1}
    for key, value in change.items():
        (args if key in args else kwargs)[key] = value
    with pytest.raises(InputError, match=message) as e:
        pipe.write_video(args["image"], args["audio"], args["output"], **kwargs)
    assert "\n" not in str(e.value)
    assert not (files / "api.mp4").exists() and not list(files.glob(".api*"))
