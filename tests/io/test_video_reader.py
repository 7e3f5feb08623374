"""The video reader: native frames, the 25 fps selection, seeking, and broken files."""

from __future__ import annotations

import pathlib
from fractions import Fraction

import av
import numpy as np
import pytest

from floatalk.errors import InputError
from floatalk.io import (
    VideoError,
    VideoReader,
    VideoWriter,
    iter_video_frames,
    read_video_frames,
    read_video_info,
    video_fps,
)

SIZE = 16


def _frames(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 16, 16, 3)`` uint8 frames, each a different random picture."""
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def _write(path: pathlib.Path, frames: np.ndarray, fps: float | Fraction) -> pathlib.Path:
    with VideoWriter(path, SIZE, SIZE, fps=fps, preset="ultrafast") as w:
        w.write(frames)
    return path


def _nearest(n: int, fps: Fraction, out_fps: int = 25) -> list[int]:
    """Expected selection: for ``j / out_fps`` the source frame with the nearest time (tie: earlier)."""
    count = round(out_fps * Fraction(n) / fps)
    return [
        min(range(n), key=lambda i: (abs(Fraction(i) / fps - Fraction(j, out_fps)), i)) for j in range(count)
    ]


def _one_line(e: pytest.ExceptionInfo[InputError], *needles: str) -> None:
    text = str(e.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


@pytest.mark.parametrize(("fps", "n"), [(Fraction(30), 30), (Fraction(25, 2), 10)])
def test_resampled_to_25_fps_takes_the_nearest_frame(tmp_path: pathlib.Path, fps: Fraction, n: int) -> None:
    # 30 fps drops every sixth frame; 12.5 fps repeats each frame (a tie goes to the earlier frame).
    path = _write(tmp_path / "v.mp4", _frames(n), fps)
    native = read_video_frames(path)
    with VideoReader(path) as video:
        assert video.fps == pytest.approx(float(fps)) and (video.width, video.height) == (SIZE, SIZE)
        picked = [(j, frame.index, frame.rgb()) for j, frame in video.resampled(25)]
        assert video.end_time == pytest.approx(n / fps)
        assert video.decoded == n and video.failures == 0
    assert [j for j, _, _ in picked] == list(range(len(picked)))
    assert [i for _, i, _ in picked] == _nearest(n, fps)
    for _, i, rgb in picked:
        assert np.array_equal(rgb, native[i])


def test_frames_times_and_info(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "v.mp4", _frames(6), 30)
    with VideoReader(path) as video:
        frames = list(video.frames())
        assert video.num_frames in (0, 6) and not video.has_audio and video.codec == "h264"
    assert [f.index for f in frames] == list(range(6))
    assert [f.time for f in frames] == pytest.approx([i / 30 for i in range(6)])
    assert frames[0].size == (SIZE, SIZE) and frames[0].rgb(8).shape == (8, 8, 3)  # downscaled
    assert video_fps(path) == pytest.approx(30.0)
    assert read_video_info(path)["num_frames"] == 6
    assert len(list(iter_video_frames(path))) == 6


@pytest.fixture(scope="module")
def short_gop(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, np.ndarray]:
    """40 frames at 30 fps with a keyframe every 8 frames and B-frames, so that seeks land mid-file."""
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    with av.open(str(path), "w") as container:
        options = {"g": "8", "keyint_min": "8", "sc_threshold": "0", "bf": "2"}
        stream = container.add_stream("libx264", rate=30, options=options)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        for i, image in enumerate(_frames(40, seed=1)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path, read_video_frames(path)


@pytest.mark.parametrize("start", [1, 9, 16, 23, 39])
def test_seeking_to_a_frame_gives_the_same_pixels(short_gop, start: int) -> None:
    path, native = short_gop
    with VideoReader(path) as video:
        list(video.frames())  # a pass first: seeking must work on a used reader too
        before = video.decoded
        frames = list(video.frames(start_frame=start))
        decoded = video.decoded - before
    assert [f.index for f in frames] == list(range(start, 40))
    for f in frames:
        assert np.array_equal(f.rgb(), native[f.index])
    assert decoded <= 40 - (start // 8) * 8  # decoding began at the keyframe before, not at frame 0


def test_seeking_by_time_and_in_the_25_fps_stream(short_gop) -> None:
    path, native = short_gop
    with VideoReader(path) as video:
        shown = next(video.frames(start_time=0.52))  # frames at 0.5 and 0.5333 s: 0.5 is on screen
        assert shown.index == 15 and np.array_equal(shown.rgb(), native[15])
        whole = [(j, f.index, f.rgb()) for j, f in video.resampled(25)]
        for start in (1, 12, 20, len(whole) - 1):
            tail = [(j, f.index, f.rgb()) for j, f in video.resampled(25, start_frame=start)]
            assert [(j, i) for j, i, _ in tail] == [(j, i) for j, i, _ in whole[start:]]
            assert all(np.array_equal(a[2], b[2]) for a, b in zip(tail, whole[start:], strict=True))
        assert list(video.resampled(25, start_frame=len(whole) + 5)) == []


def _packets(path: pathlib.Path) -> list[tuple[int, int]]:
    """``(byte offset, size)`` of every video packet in the file."""
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]


def _damaged(src: pathlib.Path, dst: pathlib.Path, which: list[int]) -> pathlib.Path:
    data = bytearray(src.read_bytes())
    for pos, size in (_packets(src)[i] for i in which):
        data[pos : pos + size] = bytes(size)
    dst.write_bytes(bytes(data))
    return dst


def test_bad_packets_are_counted_and_skipped(tmp_path: pathlib.Path) -> None:
    src = _write(tmp_path / "v.mp4", _frames(20), 25)
    path = _damaged(src, tmp_path / "bad.mp4", [5, 9])
    with VideoReader(path) as video:
        frames = list(video.frames())
        assert 0 < len(frames) < 20 and video.failures == 2
    with pytest.raises(VideoError) as e:  # strict readers stop at the first bad packet
        list(iter_video_frames(path))
    _one_line(e, "could not be decoded", "give an intact video file")
    assert e.value.kind == "decode"


def test_truncated_file_ends_the_stream(tmp_path: pathlib.Path) -> None:
    data = _write(tmp_path / "v.mp4", _frames(20), 25).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 2 // 3])
    with VideoReader(path) as video:
        assert 0 < sum(1 for _ in video.frames()) < 20
        assert 0 < sum(1 for _ in video.resampled(25)) < 20


def test_nothing_decodable_is_one_line(tmp_path: pathlib.Path) -> None:
    src = _write(tmp_path / "v.mp4", _frames(8), 25)
    path = _damaged(src, tmp_path / "dead.mp4", list(range(len(_packets(src)))))
    with VideoReader(path) as video, pytest.raises(VideoError) as e:
        list(video.resampled(25))
    _one_line(e, "'" + str(path) + "'", "no frame could be decoded", "give an intact video file")
    assert e.value.kind == "decode" and e.value.reason == "not a readable video (no frame could be decoded)"


def test_no_video_track_is_one_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    for call in (VideoReader, video_fps, read_video_info):
        with pytest.raises(VideoError) as e:
            call(path)
        _one_line(e, "has no video track", "give an MP4 file")
        assert e.value.kind == "no_video" and e.value.reason == "no video track"


def test_unusable_files_are_one_line(tmp_path: pathlib.Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(2).bytes(5000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = [
        (junk, "format", "could not be opened", "not a readable video (corrupt or unknown format"),
        (empty, "file", "is empty", "empty file (0 bytes)"),
        (tmp_path / "missing.mp4", "file", "does not exist", "cannot be read ("),
    ]
    for path, kind, text, reason in cases:
        with pytest.raises(VideoError) as e:
            VideoReader(path)
        _one_line(e, text)
        assert e.value.kind == kind and e.value.reason.startswith(reason), e.value.reason
    with pytest.raises(ValueError, match="errors"):
        VideoReader(junk, errors="ignore")
