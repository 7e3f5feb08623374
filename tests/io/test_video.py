"""Tests for floatalk.io.video: atomic MP4 writing with H.264 video and AAC audio."""

from __future__ import annotations

import gc
import os
import pathlib

import av
import numpy as np
import pytest
import torch

import floatalk.io.video as video_mod
from floatalk.errors import InputError
from floatalk.io.audio import load_audio
from floatalk.io.video import VideoWriter, check_output_path, read_video_frames, read_video_info

SR = 16000
AAC_FRAME_S = 1024 / SR  # one AAC frame at 16 kHz = 64 ms

# ---------------------------------------------------------------------------- helpers


def _gradient(h: int = 64, w: int = 64, shift: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // (w - 1) + shift) % 256
    g = y * 255 // (h - 1)
    b = (x + y) * 255 // (w + h - 2)
    return np.stack([r, g, b], -1).astype(np.uint8)


def _sine(seconds: float, freq: float = 440.0, extra: int = 0) -> np.ndarray:
    n = round(seconds * SR) + extra
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def _check_one_line(excinfo: pytest.ExceptionInfo[InputError], *needles: str) -> None:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg and msg.strip() == msg
    assert ";" in msg, f"message should name the fix after a semicolon: {msg}"
    for needle in needles:
        assert needle in msg, msg


def _leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---------------------------------------------------------------------------- writing


def test_frames_fps_audio_and_pixels(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out.mp4"
    n_frames, audio = 20, _sine(1.3, extra=13)  # 20813 samples: not a whole number of milliseconds
    frames = np.stack([_gradient(shift=3 * i) for i in range(n_frames)])
    with VideoWriter(out, 64, 64, fps=25, audio=audio, sample_rate=SR) as w:
        w.write(frames[:7])  # a batch
        for f in frames[7:]:
            w.write(f)  # single (H, W, 3) frames
    assert _leftovers(tmp_path) == ["out.mp4"]

    info = read_video_info(out)
    assert info["num_frames"] == n_frames
    assert info["fps"] == 25.0
    assert (info["width"], info["height"]) == (64, 64)
    assert info["video_codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["has_audio"] and info["audio_codec"] == "aac"
    # 16 kHz is stored at 48 kHz (a whole factor up), so AAC's padded last frame stays under 25 ms
    assert info["audio_sample_rate"] == 3 * SR and info["audio_channels"] == 1
    assert info["audio_declared_duration"] == pytest.approx(len(audio) / SR, abs=1e-9)
    assert abs(info["audio_duration"] - len(audio) / SR) <= AAC_FRAME_S

    decoded = read_video_frames(out)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 3
    for i in (0, n_frames // 2, n_frames - 1):  # frames in order (each has its own shift)
        assert np.abs(decoded[i].astype(int) - frames[i]).mean() < 3

    back = load_audio(out)
    assert len(back) == len(audio)  # end padding trimmed using the MP4 edit list
    spec = np.abs(np.fft.rfft(back * np.hanning(len(back))))
    assert abs(np.fft.rfftfreq(len(back), 1 / SR)[np.argmax(spec)] - 440) <= 1
    corr = np.dot(back[800:-800], audio[800:-800]) / (
        np.linalg.norm(back[800:-800]) * np.linalg.norm(audio[800:-800])
    )
    assert corr > 0.98  # same timing: no encoder delay left in


def test_saturated_colours_roundtrip(tmp_path: pathlib.Path) -> None:
    """Catches a BT.601/BT.709 matrix mismatch between encoding and the stream's colour tags."""
    colours = np.array(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255], [128, 128, 128]],
        np.uint8,
    )
    img = np.repeat(np.repeat(colours[None], 64, axis=0), 8, axis=1)  # 64 x 56 stripes
    img = np.concatenate([img, np.zeros((64, 8, 3), np.uint8)], axis=1)
    out = tmp_path / "c.mp4"
    with VideoWriter(out, 64, 64) as w:
        w.write(np.stack([img] * 3))
    decoded = read_video_frames(out)[1].astype(int)
    for k, c in enumerate(colours):
        patch = decoded[:, 8 * k + 2 : 8 * k + 6]  # away from chroma-subsampled stripe edges
        assert np.abs(patch - c).mean() < 3, (k, patch.mean(axis=(0, 1)))


def test_torch_frames_are_converted(tmp_path: pathlib.Path) -> None:
    img = _gradient()
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255 * 2 - 1  # (3, H, W) in [-1, 1]
    batch = torch.stack([t, t.clone()])
    batch[1, :, :32] = 3.0  # clamped to 1 -> 255
    batch[1, :, 32:] = -7.0  # clamped to -1 -> 0
    out = tmp_path / "t.mp4"
    with VideoWriter(out, 64, 64) as w:
        w.write(batch)  # (N, 3, H, W)
        w.write(t)  # (3, H, W)
    decoded = read_video_frames(out).astype(int)
    assert decoded.shape == (3, 64, 64, 3)
    assert np.abs(decoded[0] - img).mean() < 3 and np.abs(decoded[2] - img).mean() < 3
    assert decoded[1, 4:28].mean() > 250 and decoded[1, 36:60].mean() < 5


def test_frames_to_uint8_rounds_to_nearest() -> None:
    values = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, float("nan")])
    x = values.view(1, 1, 1, -1).expand(1, 3, 1, -1)
    got = video_mod._frames_to_uint8(x, 1, values.numel())[0, 0, :, 0]
    expected = np.round((np.clip(np.nan_to_num(values.numpy()), -1, 1) + 1) / 2 * 255)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8


def test_audio_longer_than_video_is_kept(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "long_audio.mp4"
    with VideoWriter(out, 64, 64, audio=_sine(1.0), sample_rate=SR) as w:
        w.write(np.stack([_gradient()] * 5))  # 0.2 s of video
    info = read_video_info(out)
    assert info["num_frames"] == 5
    assert info["audio_declared_duration"] == pytest.approx(1.0, abs=1e-6)
    assert abs(info["audio_duration"] - 1.0) <= AAC_FRAME_S


def test_audio_is_interleaved(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "inter.mp4"
    with VideoWriter(out, 64, 64, audio=_sine(2.0), sample_rate=SR) as w:
        for i in range(50):
            w.write(_gradient(shift=i))
    with av.open(str(out)) as c:
        kinds = [p.stream.type for p in c.demux() if p.size]
    assert kinds.count("video") == 50
    first_half = kinds[: len(kinds) // 2]
    assert "audio" in first_half and "video" in first_half


def test_unusual_audio_rate_and_tensor_audio(tmp_path: pathlib.Path) -> None:
    audio = torch.from_numpy(_sine(0.5) * 3)[None]  # (1, N), out of range: clipped
    out = tmp_path / "rate.mp4"
    with VideoWriter(out, 64, 64, audio=audio, sample_rate=15000) as w:  # AAC cannot store 15 kHz
        w.write(_gradient())
    info = read_video_info(out)
    assert info["audio_sample_rate"] == 48000
    # 8000 samples at 15 kHz -> ceil(8000 * 48000 / 15000) = 25600 samples at 48 kHz, exactly.
    assert info["audio_declared_duration"] == pytest.approx(25600 / 48000, abs=1e-9)
    assert len(load_audio(out, sample_rate=48000)) == 25600


def test_odd_size_is_padded(tmp_path: pathlib.Path) -> None:
    img = _gradient(47, 63)
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 63, 47) as w:
        assert (w.encoded_width, w.encoded_height) == (64, 48)
        w.write(np.stack([img] * 2))
    info = read_video_info(out)
    assert (info["width"], info["height"]) == (64, 48)
    decoded = read_video_frames(out)[0].astype(int)
    assert np.abs(decoded[:47, :63] - img).mean() < 3
    assert np.abs(decoded[47, :63] - img[46]).mean() < 4  # replicated last row


def test_fractional_fps(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "ntsc.mp4"
    with VideoWriter(out, 64, 64, fps=29.97) as w:
        w.write(np.stack([_gradient()] * 4))
    info = read_video_info(out)
    assert info["num_frames"] == 4 and info["fps"] == pytest.approx(29.97, abs=1e-3)


def test_file_mode_follows_umask(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "perm.mp4"
    with VideoWriter(out, 64, 64) as w:
        w.write(_gradient())
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------- atomicity


def test_exception_leaves_nothing(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, 64, 64, audio=_sine(1.0)) as w:
        w.write(np.stack([_gradient()] * 10))
        raise RuntimeError("boom")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_keeps_existing_file(tmp_path: pathlib.Path, exc: type[BaseException]) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(exc), VideoWriter(out, 64, 64) as w:
        w.write(_gradient())
        raise exc()
    assert out.read_bytes() == b"previous result"
    assert _leftovers(tmp_path) == ["out.mp4"]


def test_success_replaces_existing_file(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with VideoWriter(out, 64, 64) as w:
        w.write(_gradient())
        assert out.read_bytes() == b"previous result"  # untouched until the writer closes
    assert read_video_info(out)["num_frames"] == 1
    assert _leftovers(tmp_path) == ["out.mp4"]


def test_no_frames_is_an_error(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "empty.mp4"
    with pytest.raises(ValueError, match="no frames"), VideoWriter(out, 64, 64):
        pass
    assert _leftovers(tmp_path) == []


def test_bad_frames_abort_cleanly(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="does not match"), VideoWriter(out, 64, 64) as w:
        w.write(np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(TypeError), VideoWriter(out, 64, 64) as w:
        w.write(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(TypeError), VideoWriter(out, 64, 64) as w:
        w.write(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError), VideoWriter(out, 64, 64) as w:
        w.write(torch.zeros(1, 64, 64, 3))
    assert _leftovers(tmp_path) == []


def test_write_after_close_and_double_close(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "c.mp4"
    w = VideoWriter(out, 64, 64)
    w.write(_gradient())
    w.close()
    w.close()  # no-op
    with pytest.raises(RuntimeError, match="closed"):
        w.write(_gradient())
    assert read_video_info(out)["num_frames"] == 1


def test_abort_removes_temp_file(tmp_path: pathlib.Path) -> None:
    w = VideoWriter(tmp_path / "gone.mp4", 64, 64)
    w.write(_gradient())
    assert len(_leftovers(tmp_path)) == 1  # the hidden temporary file
    assert _leftovers(tmp_path)[0].startswith(".gone.")
    w.abort()
    assert _leftovers(tmp_path) == []


def test_abandoned_writer_removes_temp_file(tmp_path: pathlib.Path) -> None:
    w = VideoWriter(tmp_path / "dropped.mp4", 64, 64)
    w.write(_gradient())
    del w
    gc.collect()
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- encoders


def test_mpeg4_fallback(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_mod, "select_video_encoder", lambda: "mpeg4")
    out = tmp_path / "m4.mp4"
    with VideoWriter(out, 64, 64, audio=_sine(0.3)) as w:
        w.write(np.stack([_gradient()] * 3))
    info = read_video_info(out)
    assert info["video_codec"] == "mpeg4" and info["num_frames"] == 3
    assert np.abs(read_video_frames(out)[0].astype(int) - _gradient()).mean() < 3


def test_no_encoder_gives_clear_error(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_mod, "_VIDEO_ENCODERS", ("no_such_encoder",))
    video_mod.select_video_encoder.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"no usable H\.264") as e:
            VideoWriter(tmp_path / "x.mp4", 64, 64)
        assert "\n" not in str(e.value)
    finally:
        video_mod.select_video_encoder.cache_clear()
    assert _leftovers(tmp_path) == []


def test_default_encoder_is_h264() -> None:
    assert video_mod.select_video_encoder() in ("libx264", "h264")


# ---------------------------------------------------------------------------- output path checks


def test_check_output_path_ok(tmp_path: pathlib.Path) -> None:
    assert check_output_path(tmp_path / "a.mp4") == tmp_path / "a.mp4"
    assert check_output_path(str(tmp_path / "a.MOV")) == tmp_path / "a.MOV"
    assert _leftovers(tmp_path) == []  # the writability probe is removed


def test_output_dir_missing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError) as e:
        VideoWriter(tmp_path / "nope" / "out.mp4", 64, 64)
    _check_one_line(e, "does not exist", "nope")


def test_output_is_directory(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "dir.mp4"
    d.mkdir()
    with pytest.raises(InputError) as e:
        check_output_path(d)
    _check_one_line(e, "is a directory")


def test_output_bad_extension(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError) as e:
        check_output_path(tmp_path / "out.wav")
    _check_one_line(e, ".mp4")
    with pytest.raises(InputError):
        check_output_path(tmp_path / "out")


def test_output_parent_is_a_file(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError) as e:
        check_output_path(f / "out.mp4")
    _check_one_line(e, "not a directory")


def test_output_dir_not_writable(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def deny(path: os.PathLike[str] | str, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if os.fspath(path).startswith(os.fspath(tmp_path)) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, mode, **kwargs)

    # Root may write anywhere, so simulate a read-only directory instead of chmod.
    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(InputError) as e:
        VideoWriter(tmp_path / "out.mp4", 64, 64)
    _check_one_line(e, "not writable")
    monkeypatch.undo()
    assert _leftovers(tmp_path) == []


def test_read_video_info_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError) as e:
        read_video_info(tmp_path / "missing.mp4")
    _check_one_line(e, "does not exist")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 10)
    with pytest.raises(InputError) as e:
        read_video_info(junk)
    _check_one_line(e, "could not be opened")


def test_constructor_argument_checks(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "a.mp4"
    for kwargs in ({"width": 0}, {"height": -2}, {"fps": 0}, {"crf": 60}, {"audio": np.zeros((2, 5))}):
        args = {"width": 64, "height": 64} | kwargs
        with pytest.raises(ValueError):
            VideoWriter(out, **args)
    assert _leftovers(tmp_path) == []
