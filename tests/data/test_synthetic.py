"""The synthetic talking-portrait world: determinism, speech-driven mouth, visible motion, dataset layout."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from floatalk.config import EMOTION_LABELS
from floatalk.data import layout
from floatalk.data import synthetic as syn
from floatalk.errors import InputError

SMALL = syn.SyntheticConfig(size=64, num_clips=4, seed=3, clip_seconds=(1.2, 1.8), test_fraction=0.25)


@pytest.fixture(scope="module")
def clip() -> syn.SyntheticClip:
    return syn.render_clip(SMALL, 0)


def neutral_tracks(n: int, **overrides: np.ndarray) -> dict[str, np.ndarray]:
    tracks = {name: np.zeros(n, np.float32) for name in syn.CONTROL_TRACKS if name != "pose"}
    tracks["pose"] = np.tile(np.array([0, 0, 0, 0, 0, 1], np.float32), (n, 1))
    tracks.update(overrides)
    return tracks


def box_mask(box: np.ndarray, size: int) -> np.ndarray:
    x0, y0, x1, y1 = (round(v) for v in box)
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def frame_energy(audio: np.ndarray, num_frames: int) -> np.ndarray:
    hop = syn.SAMPLE_RATE // syn.FPS
    a = np.pad(audio.astype(np.float64), (0, max(0, num_frames * hop - len(audio))))[: num_frames * hop]
    return np.sqrt((a.reshape(num_frames, hop) ** 2).mean(axis=1))


# ----------------------------------------------------------------------------------------------------
# Config, assets, plan
# ----------------------------------------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    cfg = syn.SyntheticConfig()
    assert (cfg.size, cfg.num_clips, cfg.seed) == (128, 16, 0)
    assert syn.SyntheticConfig(clip_seconds=[1, 2]) == syn.SyntheticConfig(clip_seconds=(1, 2))
    for bad in ({"size": 8}, {"test_fraction": 1.0}, {"frame_format": "gif"}, {"clip_seconds": (3, 2)}):
        with pytest.raises(ValueError):
            syn.SyntheticConfig(**bad)
    assert set(syn.EMOTIONS) <= set(EMOTION_LABELS)


def test_assets_have_landmarks_and_speech_splits() -> None:
    portraits = syn.load_portraits()
    assert len(portraits) >= 3
    for p in portraits:
        assert p.image.ndim == 3 and p.image.shape[0] == p.image.shape[1] and p.image.dtype == np.uint8
        pts = p.points
        assert pts["mouth_left"][0] < pts["mouth_right"][0] and pts["left_iris"][0] < pts["right_iris"][0]
        assert pts["left_iris"][1] < pts["upper_lip_outer"][1] < pts["lower_lip_outer"][1] < pts["chin"][1]
    speech = syn.load_speech_clips()
    assert len(speech) >= 10 and {s.split for s in speech} == {"train", "test"}
    for s in speech:
        assert s.audio.dtype == np.float32 and 1.0 < len(s.audio) / syn.SAMPLE_RATE <= 5.0
    with pytest.raises(InputError):
        syn.load_portraits(["nobody"])


def test_plan_splits_never_share_speech() -> None:
    cfg = syn.SyntheticConfig(num_clips=40, test_fraction=0.2)
    plans = syn.plan_clips(cfg)
    test = [p for p in plans if p.split == "test"]
    train = [p for p in plans if p.split == "train"]
    assert len(test) == 8 and [p.index for p in plans] == list(range(40))
    assert not {p.speech for p in test} & {p.speech for p in train}
    reserved = {s.name for s in syn.load_speech_clips("test")}
    assert {p.speech for p in test} <= reserved and not {p.speech for p in train} & reserved
    # held-out portraits only in test clips, and every portrait used
    assert {p.portrait for p in train} == {p.name for p in syn.load_portraits(split="train")}
    assert {p.portrait for p in test} == {p.name for p in syn.load_portraits(split="test")}
    assert {p.emotion for p in plans} == set(syn.EMOTIONS)
    assert {p.emotion for p in syn.plan_clips(dataclasses.replace(cfg, emotions=False))} == {"neutral"}
    assert syn.plan_clips(syn.SyntheticConfig(num_clips=1, test_fraction=0.5))[0].split == "train"


def test_balanced_emotions_are_not_tied_to_the_portrait() -> None:
    """Regression: with 15 train portraits and 5 emotions both cycled with the clip index, every
    portrait always had one emotion, so the label told a model nothing the source frame did not (the
    emotion timeline of v3-v6 failed). The balanced plan gives each portrait several emotions, each
    emotion an equal share, and leaves the rest of the plan as it was."""
    from collections import Counter, defaultdict

    cfg = syn.SyntheticConfig(num_clips=200, test_fraction=0.06, morphs=0.5)
    plans, cycled = syn.plan_clips(cfg), syn.plan_clips(dataclasses.replace(cfg, emotion_plan="cycled"))
    strip = [(p.portrait, p.speech, p.split) for p in plans]
    assert strip == [(p.portrait, p.speech, p.split) for p in cycled]
    for plan_list, tied in ((cycled, True), (plans, False)):
        seen = defaultdict(set)
        for p in plan_list:
            if p.split == "train" and "~" not in p.portrait:  # the 15 real train portraits
                seen[p.portrait].add(p.emotion)
        assert len(seen) == 15
        assert all(len(e) == 1 for e in seen.values()) == tied
    assert min(len(e) for e in seen.values()) >= 2
    counts = Counter(p.emotion for p in plans)
    assert set(counts) == set(syn.EMOTIONS) and max(counts.values()) - min(counts.values()) <= 1
    with pytest.raises(ValueError, match="emotion_plan"):
        syn.SyntheticConfig(emotion_plan="random")


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------


def test_render_clip_shapes_and_tracks(clip: syn.SyntheticClip) -> None:
    T, S = clip.num_frames, SMALL.size
    assert clip.frames.shape == (T, S, S, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.float32 and np.abs(clip.audio).max() <= 1.0
    assert math.ceil(len(clip.audio) * syn.FPS / syn.SAMPLE_RATE) == T
    assert SMALL.clip_seconds[0] - 1e-3 <= len(clip.audio) / syn.SAMPLE_RATE <= SMALL.clip_seconds[1] + 1e-3
    assert set(clip.tracks) == set(syn.TRACK_NAMES)
    for name, value in clip.tracks.items():
        assert value.dtype == np.float32 and len(value) == T, name
    assert clip.tracks["pose"].shape == (T, len(syn.POSE_COLUMNS))
    assert clip.tracks["mouth_open"].min() >= 0.0 and clip.tracks["mouth_open"].max() <= 1.0
    assert clip.tracks["mouth_open"].max() > 0.3
    for name in ("left_eye_box", "right_eye_box", "mouth_box"):
        box = clip.tracks[name]
        assert np.all(box[:, 0] < box[:, 2]) and np.all(box[:, 1] < box[:, 3])
        assert box.min() >= 0 and box.max() <= S
    left, right, mouth = (clip.tracks[n] for n in ("left_eye_box", "right_eye_box", "mouth_box"))
    assert np.all(left[:, 2] <= right[:, 2]) and np.all(np.maximum(left[:, 3], right[:, 3]) < mouth[:, 3])
    pose = clip.tracks["pose"]
    assert np.ptp(pose[:, 0]) > 0.3 and np.abs(np.diff(pose[:, 0])).max() < 2.0  # moves, smoothly


def test_deterministic_and_seed_dependent(clip: syn.SyntheticClip) -> None:
    again = syn.render_clip(SMALL, 0)
    assert np.array_equal(again.frames, clip.frames) and np.array_equal(again.audio, clip.audio)
    for name in syn.TRACK_NAMES:
        assert np.array_equal(again.tracks[name], clip.tracks[name])
    other = syn.render_clip(dataclasses.replace(SMALL, seed=4), 0)
    n = min(other.num_frames, clip.num_frames)
    assert not np.array_equal(other.frames[:n], clip.frames[:n])
    assert not np.array_equal(other.tracks["pose"][:n], clip.tracks["pose"][:n])


def test_mouth_follows_speech_energy(clip: syn.SyntheticClip) -> None:
    mouth = clip.tracks["mouth_open"]
    energy = frame_energy(clip.audio, clip.num_frames)
    assert np.corrcoef(mouth, energy)[0, 1] > 0.7
    # leading silence: closed mouth, and mouth pixels exactly those of a closed-mouth rendering
    silent = int(clip.extra["lead_seconds"] * syn.FPS) - 1
    assert silent >= 3 and np.all(mouth[:silent] == 0)
    closed = dict(clip.tracks, mouth_open=np.zeros_like(mouth))
    frames = syn.render_frames(
        syn.load_portraits([clip.plan.portrait])[0], SMALL.size, closed, SMALL.max_mouth_open
    )
    assert np.array_equal(frames[:silent], clip.frames[:silent])
    speaking = mouth > 0.3
    assert np.abs(frames[speaking].astype(int) - clip.frames[speaking]).mean() > 0.5


def test_mouth_from_audio_properties() -> None:
    rate, n = syn.SAMPLE_RATE, 50
    t = np.arange(n * rate // syn.FPS) / rate
    bursts = (np.sin(2 * np.pi * 1.0 * t) > 0.3).astype(float) * np.sin(2 * np.pi * 600 * t) * 0.3
    m = syn.mouth_from_audio(bursts, n)
    assert m.shape == (n,) and m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1
    assert np.corrcoef(m, frame_energy(bursts, n))[0, 1] > 0.8
    assert m.max() > 0.8 and (m == 0).sum() >= 15  # opens on sound, fully closed between bursts
    np.testing.assert_allclose(syn.mouth_from_audio(0.05 * bursts, n), m, atol=1e-5)  # gain-invariant
    assert np.all(syn.mouth_from_audio(np.zeros_like(bursts), n) == 0)
    lagged = syn.mouth_from_audio(bursts, n, lag_frames=2)
    np.testing.assert_array_equal(lagged[2:], m[:-2])


@pytest.mark.parametrize("name", ["obama", "hopper"])
def test_neutral_controls_reproduce_the_portrait(name: str) -> None:
    portrait = syn.load_portraits([name])[0]
    frames = syn.render_frames(portrait, 64, neutral_tracks(1))
    assert np.abs(frames[0].astype(int) - portrait.resized(64)).max() <= 1


def test_mouth_opening_is_local_and_visible() -> None:
    S = 96
    for portrait in syn.load_portraits():
        tracks = neutral_tracks(2, mouth_open=np.array([0.0, 1.0], np.float32))
        frames = syn.render_frames(portrait, S, tracks).astype(int)
        boxes = syn.component_boxes(portrait, S, tracks)
        diff = np.abs(frames[1] - frames[0]).sum(axis=-1)
        mouth = box_mask(boxes["mouth_box"][1], S)
        eyes = box_mask(boxes["left_eye_box"][1], S) | box_mask(boxes["right_eye_box"][1], S)
        assert diff[mouth].mean() > 40, portrait.name  # clearly visible
        assert diff[mouth].mean() > 5 * diff[~mouth].mean(), portrait.name
        assert diff[eyes].max() == 0, portrait.name
        # the opened mouth shows a dark interior: where the pixels changed, the darkest tenth of them
        # is clearly darker than the skin and lips were there before (unless that was near black already)
        changed = mouth & (diff > 60)
        before, after = (np.percentile(f[changed].sum(axis=-1), 10) for f in frames)
        assert changed.sum() > 20 and (after < 0.7 * before or before < 100), (portrait.name, before, after)


def test_blink_changes_eye_pixels_only() -> None:
    S = 96
    for portrait in syn.load_portraits():
        tracks = neutral_tracks(2, blink=np.array([0.0, 1.0], np.float32))
        frames = syn.render_frames(portrait, S, tracks).astype(int)
        boxes = syn.component_boxes(portrait, S, tracks)
        diff = np.abs(frames[1] - frames[0]).sum(axis=-1)
        for name in ("left_eye_box", "right_eye_box"):
            eye = diff[box_mask(boxes[name][1], S)]
            assert eye.mean() > 2 and eye.max() > 60, (portrait.name, name)
        assert diff[box_mask(boxes["mouth_box"][1], S)].max() == 0, portrait.name


def test_head_pose_moves_the_boxes_and_pixels() -> None:
    portrait = syn.load_portraits(["astronaut"])[0]
    S = 64
    pose = np.array([[0, 0, 0, 0, 0, 1], [10, 0, 0, 0.1, 0, 1]], np.float32)
    tracks = neutral_tracks(2, pose=pose)
    frames = syn.render_frames(portrait, S, tracks).astype(int)
    boxes = syn.component_boxes(portrait, S, tracks)
    assert np.abs(frames[1] - frames[0]).mean() > 5
    shift = boxes["mouth_box"][1] - boxes["mouth_box"][0]
    assert 0.05 * S < (shift[0] + shift[2]) / 2 < 0.2 * S  # moved right by ~tx (+ the roll about the neck)


def test_still_heads_hold_one_pose_and_change_nothing_else() -> None:
    """still_heads=1: every train clip holds the pose of one of its own frames, while the mouth, blinks
    and expression tracks (and the test clips) are those of the same world without still heads."""
    moving = dataclasses.replace(SMALL, clip_seconds=(1.0, 1.2))
    still = dataclasses.replace(moving, still_heads=1.0)
    for index in range(moving.num_clips):
        a, b = syn.render_clip(still, index), syn.render_clip(moving, index)
        for name, track in b.tracks.items():
            if name == "pose" or name.endswith("_box"):
                continue
            np.testing.assert_array_equal(a.tracks[name], track, err_msg=name)
        if a.plan.split == "test":
            np.testing.assert_array_equal(a.tracks["pose"], b.tracks["pose"])
            continue
        assert float(b.tracks["pose"].std(0).max()) > 0.1  # the head moves in the plain world
        np.testing.assert_array_equal(
            a.tracks["pose"], np.broadcast_to(a.tracks["pose"][0], a.tracks["pose"].shape)
        )
        assert np.isclose(b.tracks["pose"], a.tracks["pose"][0]).all(1).any()  # one of its own frames
    with pytest.raises(ValueError, match="still_heads"):
        syn.SyntheticConfig(still_heads=1.5)


def test_emotion_changes_move_the_expression_inside_a_clip_and_change_nothing_else() -> None:
    """emotion_changes=1: every train clip goes from its emotion to another over a smooth transition.
    Before the change the expression is that of the same world without changes, after it another
    emotion's; the emotion_mix track says which, its rows sum to 1; the pose, blinks, the test clips
    and (with changes=0) the whole world stay as before, without an emotion_mix track."""
    plain = dataclasses.replace(SMALL, clip_seconds=(2.0, 2.4))
    changing = dataclasses.replace(plain, emotion_changes=1.0)
    assert "emotion_mix" not in syn.render_clip(plain, 0).tracks
    for index in range(plain.num_clips):
        a, b = syn.render_clip(changing, index), syn.render_clip(plain, index)
        for name in ("pose", "blink"):
            np.testing.assert_array_equal(a.tracks[name], b.tracks[name], err_msg=name)
        mix = a.tracks["emotion_mix"]
        np.testing.assert_allclose(mix.sum(1), 1.0, atol=1e-6)
        first = syn.EMOTIONS.index(a.plan.emotion)
        if a.plan.split == "test":
            np.testing.assert_array_equal(a.frames, b.frames)
            assert (mix[:, first] == 1).all() and "emotion_after" not in a.extra
            continue
        later = a.extra["emotion_after"]
        assert later != a.plan.emotion and later in syn.EMOTIONS
        switch = round(a.extra["emotion_change_seconds"] * syn.FPS)
        half = round(syn.EMOTION_TRANSITION_SECONDS * syn.FPS / 2)
        before, after = slice(0, switch - half - 1), slice(switch + half + 1, None)
        assert (mix[before, first] == 1).all() and (mix[after, syn.EMOTIONS.index(later)] == 1).all()
        assert np.all(np.diff(mix[:, syn.EMOTIONS.index(later)]) >= 0)  # one smooth change
        for name in ("smile", "brow_raise", "brow_inner"):
            np.testing.assert_array_equal(a.tracks[name][before], b.tracks[name][before], err_msg=name)
        expression = np.stack([a.tracks[n] for n in ("smile", "brow_raise", "brow_inner")], 1)
        assert syn.EMOTIONS[int(np.argmax(mix[-1]))] == later
        assert np.abs(expression[after].mean(0) - expression[before].mean(0)).max() > 0.2
        assert not np.array_equal(a.frames[after], b.frames[after])
    with pytest.raises(ValueError, match="emotion_changes"):
        syn.SyntheticConfig(emotion_changes=-0.1)


def test_emotions_shape_the_face() -> None:
    portrait = syn.load_portraits(["biden"])[0]
    base = syn.render_frames(portrait, 64, neutral_tracks(1)).astype(int)
    for track in ("smile", "brow_raise", "brow_inner"):
        for value in (-1.0, 1.0):
            frames = syn.render_frames(
                portrait, 64, neutral_tracks(1, **{track: np.array([value], np.float32)})
            )
            assert np.abs(frames.astype(int) - base).mean() > 0.2, (track, value)


# ----------------------------------------------------------------------------------------------------
# Dataset on disk
# ----------------------------------------------------------------------------------------------------


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[layout.ClipMeta]]:
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    return root, syn.write_synthetic_dataset(root, SMALL)


def test_written_dataset_is_readable(
    written: tuple[Path, list[layout.ClipMeta]], clip: syn.SyntheticClip
) -> None:
    root, metas = written
    info = layout.read_dataset_info(root)
    assert (
        info.source == "synthetic"
        and info.size == SMALL.size
        and info.fps == 25
        and info.sample_rate == 16000
    )
    assert info.extra["config"] == SMALL.to_dict()
    clips = layout.list_clips(root)
    assert [m.clip_id for m in clips] == [m.clip_id for m in metas] and len(clips) == SMALL.num_clips
    assert [m.split for m in clips].count("test") == 1
    assert {m.emotion for m in clips} <= set(syn.EMOTIONS)
    for meta in clips:
        d = layout.clip_dir(root, meta.clip_id)
        audio, rate = layout.read_audio(d)
        assert rate == 16000 and len(audio) == meta.num_samples
        assert meta.num_frames == math.ceil(meta.num_samples * 25 / 16000)
        assert len(list((d / "frames").iterdir())) == meta.num_frames
        frames = layout.read_frames(d, range(meta.num_frames), meta.frame_format)
        assert frames.shape == (meta.num_frames, SMALL.size, SMALL.size, 3)
        tracks = layout.read_tracks(d)
        assert set(tracks) == set(syn.TRACK_NAMES)
        assert all(v.dtype == np.float32 and len(v) == meta.num_frames for v in tracks.values())
    first = layout.clip_dir(root, clips[0].clip_id)
    np.testing.assert_array_equal(layout.read_tracks(first)["mouth_open"], clip.tracks["mouth_open"])
    np.testing.assert_allclose(layout.read_audio(first)[0], clip.audio, atol=1.5 / 32768)
    on_disk = layout.read_frames(first, range(clips[0].num_frames))
    assert np.abs(on_disk.astype(int) - clip.frames).mean() < 2.0  # JPEG q95
    speech = {m.extra["speech"]: m.split for m in clips}
    assert len(speech) == len(clips)  # 3 train + 1 test speech clips, none shared


def test_written_dataset_is_byte_identical_and_resumable(
    written: tuple[Path, list[layout.ClipMeta]], tmp_path: Path
) -> None:
    root, metas = written
    reference = files_of(root)
    copy = tmp_path / "again"
    assert syn.write_synthetic_dataset(copy, SMALL) == metas
    assert files_of(copy) == reference
    # resume: a missing clip is re-rendered (identically), complete ones are left alone, leftovers replaced
    victim = layout.clip_dir(copy, metas[1].clip_id)
    for p in sorted(victim.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    victim.rmdir()
    leftover = copy / "clips" / f".{metas[1].clip_id}.partial" / "frames"
    leftover.mkdir(parents=True)
    (leftover / "999999.jpg").write_bytes(b"interrupted")
    kept = layout.clip_dir(copy, metas[0].clip_id) / "meta.json"
    stamp = kept.stat().st_mtime_ns
    calls = []
    syn.write_synthetic_dataset(copy, SMALL, progress=lambda done, total: calls.append((done, total)))
    assert kept.stat().st_mtime_ns == stamp
    assert calls == [(i + 1, SMALL.num_clips) for i in range(SMALL.num_clips)]
    assert files_of(copy) == reference
    # a folder holding another dataset is refused
    with pytest.raises(InputError):
        syn.write_synthetic_dataset(copy, dataclasses.replace(SMALL, seed=9))
    assert json.loads((copy / "dataset.json").read_text())["extra"]["config"]["seed"] == SMALL.seed
