"""Tests for floatalk.io.audio: decoding any container/codec to 16 kHz mono float32."""

from __future__ import annotations

import math
import pathlib
import wave
from fractions import Fraction

import av
import numpy as np
import pytest

from floatalk.errors import InputError
from floatalk.io.audio import SampleRanges, SpeechAudio, audio_duration_frames, load_audio, resample_audio

SR_OUT = 16000


# ---------------------------------------------------------------------------- helpers


def _sine(freq: float, n: int, sr: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float64)


def _stereo_440(n: int, sr: int) -> np.ndarray:
    """Left 0.6 and right 0.2 times a 440 Hz sine: the channel average is a 0.4-amplitude sine."""
    s = _sine(440, n, sr, 1.0)
    return np.stack([0.6 * s, 0.2 * s])


def _write_wav_int(path: pathlib.Path, x: np.ndarray, sr: int, sampwidth: int) -> None:
    """Writes (C, N) float samples as an integer PCM WAV with the stdlib (8-bit is unsigned)."""
    bits = 8 * sampwidth
    full = 2 ** (bits - 1)
    q = np.clip(np.round(x.T * full), -full, full - 1).astype(np.int64)  # (N, C) interleaved
    if sampwidth == 1:
        raw = (q + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(sampwidth, "little", signed=True) for v in q.reshape(-1))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[0])
        w.setsampwidth(sampwidth)
        w.setframerate(sr)
        w.writeframes(raw)


def _encode(
    path: pathlib.Path,
    x: np.ndarray,
    sr: int,
    codec: str,
    container_format: str | None = None,
    options: dict[str, str] | None = None,
) -> None:
    """Encodes (C, N) float samples with PyAV; the encoder converts fltp to its own sample format."""
    layout = {1: "mono", 2: "stereo"}[x.shape[0]]
    with av.open(str(path), "w", format=container_format) as c:
        stream = c.add_stream(codec, rate=sr, layout=layout, options=options or {})
        step = 960 if codec == "libopus" else 1024
        for start in range(0, x.shape[1], step):
            chunk = np.ascontiguousarray(x[:, start : start + step], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.time_base = Fraction(1, sr)
            frame.pts = start
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))


def _peak_freq(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spec)])


def _expected_len(n: int, sr_in: int, sr_out: int = SR_OUT) -> int:
    return -(-n * sr_out // sr_in)


def _check_one_line(excinfo: pytest.ExceptionInfo[InputError], *needles: str) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert ";" in msg, f"message should name the fix after a semicolon: {msg}"
    for needle in needles:
        assert needle in msg, msg


# ---------------------------------------------------------------------------- lossless: exact


N_44K = 44100 + 37  # not a whole number of output samples: exercises the ceil() length rule


@pytest.mark.parametrize("sampwidth", [1, 2, 3, 4], ids=["u8", "s16", "s24", "s32"])
def test_int_wav_any_width_is_exact(tmp_path: pathlib.Path, sampwidth: int) -> None:
    path = tmp_path / f"a{sampwidth}.wav"
    _write_wav_int(path, _stereo_440(N_44K, 44100), 44100, sampwidth)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == _expected_len(N_44K, 44100) == 16014
    assert abs(_peak_freq(y, SR_OUT) - 440) <= 1
    # Downmix = average of the channels (0.6 and 0.2) -> amplitude 0.4; compare with the ideal signal.
    ref = _sine(440, len(y), SR_OUT, 0.4)
    tol = 0.02 if sampwidth == 1 else 2e-3  # 8-bit quantisation noise
    assert np.max(np.abs(y[100:-100] - ref[100:-100])) < tol


@pytest.mark.parametrize(("codec", "suffix"), [("pcm_f32le", "wav"), ("pcm_f64le", "wav"), ("flac", "flac")])
def test_float_wav_and_flac_are_exact(tmp_path: pathlib.Path, codec: str, suffix: str) -> None:
    path = tmp_path / f"a.{suffix}"
    _encode(path, _stereo_440(N_44K, 44100), 44100, codec)
    y = load_audio(path)
    assert len(y) == _expected_len(N_44K, 44100)
    ref = _sine(440, len(y), SR_OUT, 0.4)
    assert np.max(np.abs(y[100:-100] - ref[100:-100])) < 2e-3
    assert np.max(np.abs(y)) <= 1.0


@pytest.mark.parametrize("sr_in", [8000, 22050, 48000, 96000])
def test_any_source_rate_gives_exact_length_and_pitch(tmp_path: pathlib.Path, sr_in: int) -> None:
    n = int(sr_in * 0.75) + 3
    path = tmp_path / "m.wav"
    _write_wav_int(path, _sine(440, n, sr_in)[None], sr_in, 2)
    y = load_audio(path)
    assert len(y) == _expected_len(n, sr_in)
    assert abs(_peak_freq(y, SR_OUT) - 440) <= 2
    ref = _sine(440, len(y), SR_OUT, 0.5)
    assert np.max(np.abs(y[100:-100] - ref[100:-100])) < 2e-3  # no delay, no gain change


def test_other_output_rate(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a.wav"
    _write_wav_int(path, _sine(1000, 16000, 16000)[None], 16000, 2)
    y = load_audio(path, sample_rate=22050)
    assert len(y) == 22050
    assert abs(_peak_freq(y, 22050) - 1000) <= 2


def test_same_rate_mono_is_bit_exact(tmp_path: pathlib.Path) -> None:
    x = _sine(300, 8000, SR_OUT)
    path = tmp_path / "a.wav"
    _write_wav_int(path, x[None], SR_OUT, 2)
    y = load_audio(path)
    expected = np.round(x * 32768).clip(-32768, 32767) / 32768
    np.testing.assert_array_equal(y, expected.astype(np.float32))


def test_six_channels_are_averaged(tmp_path: pathlib.Path) -> None:
    s = _sine(440, 8000, SR_OUT, 1.0)
    gains = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    path = tmp_path / "surround.wav"
    _write_wav_int(path, gains[:, None] * s[None], SR_OUT, 2)
    y = load_audio(path)
    np.testing.assert_allclose(y, gains.mean() * s, atol=1e-4)


def test_resampler_rejects_aliases(tmp_path: pathlib.Path) -> None:
    """A 9 kHz tone at 44.1 kHz is above the 8 kHz output Nyquist and must vanish, not alias to 7 kHz."""
    path = tmp_path / "hf.wav"
    _write_wav_int(path, _sine(9000, 44100, 44100, 0.9)[None], 44100, 3)
    y = load_audio(path)
    assert np.sqrt(np.mean(y[200:-200] ** 2)) < 1e-4


def test_loud_float_input_is_scaled_not_clipped(tmp_path: pathlib.Path) -> None:
    x = _sine(440, 16000, SR_OUT, 1.5)[None]
    path = tmp_path / "loud.wav"
    _encode(path, x, SR_OUT, "pcm_f32le")
    y = load_audio(path)
    assert np.max(np.abs(y)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(y, x[0] / 1.5, atol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_samples_are_an_error(tmp_path: pathlib.Path, bad: float) -> None:
    x = _stereo_440(4410, 44100)
    x[1, 2000] = bad
    path = tmp_path / "bad.wav"
    _encode(path, x, 44100, "pcm_f32le")
    with pytest.raises(InputError) as e:
        load_audio(path)
    _check_one_line(e, "NaN or infinite", "bad.wav")
    with pytest.raises(InputError):
        SpeechAudio.from_file(path)
    with pytest.raises(InputError, match="NaN or infinite"):
        SpeechAudio.from_array(np.array([0.0, bad, 0.0]))


@pytest.mark.parametrize(("codec", "suffix", "sr"), [("pcm_f32le", "wav", 44100), ("aac", "m4a", 48000)])
def test_speech_audio_streams_exactly_what_load_audio_returns(tmp_path, codec, suffix, sr) -> None:
    """Block by block, any number of times, and with the same peak normalisation."""
    x = _stereo_440(int(sr * 5.3), sr) * 2.5  # louder than full scale in the float file
    path = tmp_path / f"long.{suffix}"
    _encode(path, x, sr, codec)
    whole = load_audio(path)
    speech = SpeechAudio.from_file(path)
    assert speech.num_samples == len(whole) and speech.path == path
    for _ in range(2):
        blocks = list(speech.blocks())
        assert len(blocks) > 1 and max(len(b) for b in blocks) <= 1 << 16
        assert np.array_equal(np.concatenate(blocks), whole)
    w = whole.astype(np.float64)
    assert speech.mean == pytest.approx(w.mean(), abs=1e-7) and speech.var == pytest.approx(w.var(), rel=1e-6)


def test_sample_ranges_read_overlapping_windows_of_a_stream() -> None:
    x = np.arange(5000, dtype=np.float32)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, 5000), 40, replace=False))
    ranges = SampleRanges(iter(np.split(x, cuts)))
    first = 0
    for _ in range(60):
        first += int(rng.integers(0, 120))
        last = first + int(rng.integers(0, 400))
        assert np.array_equal(ranges.read(first, last), x[first:last])


def test_resample_audio_length_rule() -> None:
    x = np.ones(1001, np.float32)
    for sr_in, sr_out in [(44100, 16000), (16000, 44100), (48000, 16000), (11025, 16000)]:
        y = resample_audio(x, sr_in, sr_out)
        assert len(y) == math.ceil(1001 * sr_out / sr_in)
    assert len(resample_audio(np.zeros(0, np.float32), 44100, 16000)) == 0
    with pytest.raises(ValueError):
        resample_audio(np.zeros((2, 10), np.float32), 44100, 16000)


# ---------------------------------------------------------------------------- lossy codecs


# codec, file suffix, source rate, container format, encoder options, length tolerance in output samples.
# Encoder delay is removed by FFmpeg (MP3 LAME/Xing header, MP4 edit list, Opus pre-skip) and the AAC
# end padding by load_audio, so those come back exact; Vorbis end trimming is coarser (allow 30 ms).
LOSSY = [
    ("libmp3lame", "mp3", 44100, None, None, 0),
    ("aac", "m4a", 44100, None, None, 0),
    ("vorbis", "ogg", 44100, None, {"strict": "experimental"}, 480),
    ("libopus", "opus", 48000, "ogg", None, 0),
]


@pytest.mark.parametrize(
    ("codec", "suffix", "sr_in", "fmt", "options", "len_tol"), LOSSY, ids=[c[1] for c in LOSSY]
)
def test_lossy_codecs(
    tmp_path: pathlib.Path,
    codec: str,
    suffix: str,
    sr_in: int,
    fmt: str | None,
    options: dict[str, str] | None,
    len_tol: int,
) -> None:
    n = sr_in  # one second of stereo
    path = tmp_path / f"a.{suffix}"
    _encode(path, _stereo_440(n, sr_in), sr_in, codec, fmt, options)
    y = load_audio(path)
    want = _expected_len(n, sr_in)
    assert abs(len(y) - want) <= len_tol, (len(y), want)
    assert abs(_peak_freq(y, SR_OUT) - 440) <= 1
    # Time alignment: a delay of even 2 ms would decorrelate a 440 Hz sine noticeably.
    m = min(len(y), want)
    ref = _sine(440, m, SR_OUT, 0.4)
    seg = slice(800, m - 800)
    corr = np.dot(y[seg], ref[seg]) / (np.linalg.norm(y[seg]) * np.linalg.norm(ref[seg]))
    assert corr > 0.95, corr


def test_audio_track_of_video(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "clip.mp4"
    sr, n = 44100, 22050
    x = _stereo_440(n, sr)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        vs.width = vs.height = 32
        vs.pix_fmt = "yuv420p"
        aus = c.add_stream("aac", rate=sr, layout="stereo")
        for i in range(13):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 10, np.uint8), format="rgb24")
            frame.pts = i
            c.mux(vs.encode(frame))
        for start in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, start : start + 1024], dtype=np.float32),
                format="fltp",
                layout="stereo",
            )
            af.sample_rate, af.pts, af.time_base = sr, start, Fraction(1, sr)
            c.mux(aus.encode(af))
        c.mux(vs.encode(None))
        c.mux(aus.encode(None))
    y = load_audio(path)
    assert len(y) == _expected_len(n, sr)
    assert abs(_peak_freq(y, SR_OUT) - 440) <= 2


# ---------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError) as e:
        load_audio(tmp_path / "nope.wav")
    _check_one_line(e, "does not exist", "nope.wav")


def test_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError) as e:
        load_audio(tmp_path)
    _check_one_line(e, "directory")


def test_zero_byte_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(InputError) as e:
        load_audio(path)
    _check_one_line(e, "empty")


@pytest.mark.parametrize(
    ("name", "data"),
    [("text.wav", b"this is not audio\nat all\n" * 20), ("noise.mp3", bytes(range(256)) * 40)],
)
def test_not_media(tmp_path: pathlib.Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as e:
        load_audio(path)
    _check_one_line(e, "could not be decoded")


def test_truncated_header(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cut.m4a"
    _encode(path, _stereo_440(22050, 44100), 44100, "aac")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError) as e:
        load_audio(path)
    _check_one_line(e)


def test_video_without_audio(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        vs.width = vs.height = 32
        vs.pix_fmt = "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode(None))
    with pytest.raises(InputError) as e:
        load_audio(path)
    _check_one_line(e, "file has no audio track")


def test_zero_samples(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nothing.wav"
    _write_wav_int(path, np.zeros((1, 0)), 16000, 2)
    assert path.stat().st_size > 0
    with pytest.raises(InputError) as e:
        load_audio(path)
    _check_one_line(e, "audio contains no samples")


def test_unreadable_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.wav"
    _write_wav_int(path, _sine(440, 1600, 16000)[None], 16000, 2)
    real_open = pathlib.Path.open

    def deny(self: pathlib.Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    # Root ignores file modes, so simulate the failure instead of chmod 000.
    monkeypatch.setattr(pathlib.Path, "open", deny)
    with pytest.raises(InputError) as e:
        load_audio(path)
    _check_one_line(e, "permission denied")


def test_bad_sample_rate_argument(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        load_audio(tmp_path / "x.wav", sample_rate=0)


# ---------------------------------------------------------------------------- audio_duration_frames


def test_audio_duration_frames_exact() -> None:
    assert audio_duration_frames(16000, 16000) == 25
    assert audio_duration_frames(16001, 16000) == 26
    assert audio_duration_frames(0, 16000) == 0
    assert audio_duration_frames(1, 16000) == 1
    # 4480 / 16000 * 25 == 7.000000000000001 in floating point; the exact answer is 7.
    assert 4480 / 16000 * 25.0 > 7
    assert audio_duration_frames(4480, 16000, 25.0) == 7
    assert audio_duration_frames(4481, 16000, 25.0) == 8
    assert audio_duration_frames(np.int64(32000), 16000, np.float64(25.0)) == 50
    assert audio_duration_frames(48000, 48000, 29.97) == 30  # 29.97 is read as 2997/100
    assert audio_duration_frames(1001 * 16, 16000, Fraction(30000, 1001)) == 30
    assert audio_duration_frames(16000, 16000, 12.5) == 13


@pytest.mark.parametrize(
    "args", [(-1, 16000, 25), (1.5, 16000, 25), (10, 0, 25), (10, 16000, 0), (10, 16000, float("nan"))]
)
def test_audio_duration_frames_rejects_bad_input(args: tuple[float, int, float]) -> None:
    with pytest.raises(ValueError):
        audio_duration_frames(*args)
