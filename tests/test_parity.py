"""Parity with the original FLOAT code, stage by stage (reference format: float-reference.md §10).

The reference holds inputs and the original implementation's outputs for pseudo-random weights
(tests/parity_weights.py). The weights go the way a user's would: written as an original-style
`float.pth` holding every key of the manifest, converted by `floatalk convert-original`, loaded by
`FloatPipeline.from_pretrained`. Set FLOATALK_PARITY_REFERENCE to check another reference file
(other seeds, lengths, guidance scales, forced emotions, nfe).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from floatalk.cli import main as cli_main
from floatalk.models.emotion import emotion_one_hot
from floatalk.nn.attention import band_mask
from floatalk.nn.embeddings import sinusoidal_positions
from floatalk.nn.stylegan import make_fir_kernel
from floatalk.pipeline import FloatPipeline
from parity_weights import REFERENCE, manifest_rows, parity_state_dict

pytestmark = pytest.mark.slow

REL_TOL = 1e-4  # relative L2 error for latents, features, velocities, probabilities
FRAME_TOL = 2e-3  # max abs error on decoded frames, on the machine the reference was made on
# Elsewhere the float summation order of the convolutions and grid_sample differs (AVX-512 hosts, other
# MKL/oneDNN code paths), and the random-weight decoder amplifies it at a few pixels whose sampling
# point sits on a zero-padded edge of the warped feature maps: measured on a 2-core AVX-512 Xeon
# (2026-12-02), mean |error| 1.6e-5, 76 of 1.57 M values above 1e-2, max 0.21. So frames pass when they
# are within FRAME_TOL everywhere, or (portably) when the mean error is tiny and the large ones are rare.
FRAME_MEAN_TOL = 1e-4  # mean abs error on decoded frames
FRAME_OUTLIER_TOL = 1e-2  # errors above this count as outliers ...
FRAME_OUTLIER_SHARE = 1e-4  # ... of which at most this share of all values


# FLOATALK_TEST_DEVICE=cuda (or mps) runs the same checks on an accelerator.
DEVICE = os.environ.get("FLOATALK_TEST_DEVICE", "cpu")


def reference_path() -> Path:
    return Path(os.environ.get("FLOATALK_PARITY_REFERENCE", REFERENCE))


def rel_err(ours: torch.Tensor, ref: np.ndarray, name: str = "") -> float:
    """||ours - ref|| / ||ref||, printed (see it with `pytest -s`)."""
    ref_t = torch.from_numpy(np.asarray(ref)).double()
    err = float((ours.double().cpu() - ref_t).norm() / ref_t.norm().clamp_min(1e-30))
    print(f"parity {name}: relative error {err:.2e}")
    return err


def original_checkpoint(seed: int) -> dict[str, torch.Tensor]:
    """Every key of the manifest, as `float.pth` would hold it (buffers and pos_embed included)."""
    state = parity_state_dict(seed)
    for key, shape, _ in manifest_rows():
        if key in state:
            continue
        if key.endswith(".kernel"):
            kernel = make_fir_kernel((1, 3, 3, 1))
            state[key] = kernel * 4 if ("upsample" in key or "conv.blur" in key) else kernel
        elif key.endswith("alignment_mask"):
            state[key] = ~band_mask(shape[0], 2)
        elif key == "fmt.pos_embed":
            state[key] = sinusoidal_positions(shape[1], shape[2])[None]
        assert list(state[key].shape) == list(shape), key
    return state


@pytest.fixture(scope="module")
def ref():
    path = reference_path()
    if not path.is_file():
        pytest.fail(f"parity reference {path} not found")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def weights_dir(ref, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("parity")
    checkpoint = tmp / "float.pth"
    state = original_checkpoint(int(ref["weights_seed"]))
    torch.save(state, checkpoint)
    del state
    gc.collect()
    assert cli_main(["convert-original", "--checkpoint", str(checkpoint), "--out", str(tmp / "weights")]) == 0
    checkpoint.unlink()
    return tmp / "weights"


@pytest.fixture(scope="module")
def pipe(weights_dir):
    return FloatPipeline.from_pretrained(weights_dir, device=DEVICE, decoding="exact")


@pytest.fixture(scope="module")
def source(pipe, ref):
    image = torch.from_numpy(ref["image"]).permute(2, 0, 1)[None].float()
    return pipe.encode_source((image / 255.0 - 0.5) / 0.5)


@pytest.fixture(scope="module")
def audio(pipe, ref):
    assert int(ref["sample_rate"]) == pipe.sample_rate
    return pipe.encode_audio(ref["waveform"])


def test_source_encoding(pipe, source, ref):
    assert rel_err(source.identity_latent, ref["identity_latent"], "identity_latent") <= REL_TOL
    assert rel_err(source.motion_coeffs, ref["motion_coeffs"], "motion_coeffs") <= REL_TOL
    assert rel_err(source.source_motion, ref["source_motion"], "source_motion") <= REL_TOL
    assert rel_err(pipe.model.motion_ae.dec.direction.basis(), ref["basis"], "basis") <= REL_TOL


def test_audio_features(audio, ref):
    assert audio.num_frames == ref["audio_features"].shape[1]
    assert rel_err(audio.features, ref["audio_features"], "audio_features") <= REL_TOL


def test_emotion_probabilities(pipe, audio, ref):
    probs = pipe.emotion_probs(audio, "auto")
    assert rel_err(probs, ref["emotion_probs_predicted"], "emotion_probs_predicted") <= REL_TOL


def _fmt_inputs(ref):
    def t(name):
        return torch.from_numpy(ref[name]).to(DEVICE)

    return dict(
        audio=t("fmt_audio"),
        source_motion=t("source_motion"),
        emotion=t("emotion_probs_predicted"),
        prev_motion=t("fmt_prev_x"),
        prev_audio=t("fmt_prev_audio"),
    )


def test_fmt_velocity(pipe, ref):
    with torch.no_grad():
        v = pipe.model.fmt(
            torch.from_numpy(ref["fmt_x"]).to(DEVICE),
            torch.tensor(float(ref["fmt_t"]), device=DEVICE),
            **_fmt_inputs(ref),
        )
    assert rel_err(v, ref["fmt_velocity"], "fmt_velocity") <= REL_TOL


def test_fmt_velocity_guided(pipe, ref):
    from floatalk.flow.conditions import WindowConditions

    guidance = pipe.sampler(
        audio_scale=float(ref["a_cfg_scale"]), emotion_scale=float(ref["e_cfg_scale"])
    ).guidance

    def full_window(t, x, cond):  # the whole L'+L window, as the reference stores it
        return pipe.model.fmt(x, t, **cond.as_kwargs())

    velocity = guidance.wrap(full_window, WindowConditions(**_fmt_inputs(ref)))
    with torch.no_grad():
        v = velocity(
            torch.tensor(float(ref["fmt_t"]), device=DEVICE), torch.from_numpy(ref["fmt_x"]).to(DEVICE)
        )
    assert rel_err(v, ref["fmt_velocity_guided"], "fmt_velocity_guided") <= REL_TOL


def test_sampled_motion_latents(pipe, source, audio, ref):
    label = str(ref["emotion"])
    emotion = pipe.emotion_probs(audio, "auto" if label == "none" else label)
    if label != "none":
        assert torch.equal(emotion, emotion_one_hot(label))
    windows = pipe.iter_motion(
        source,
        audio,
        emotion,
        nfe=int(ref["nfe"]) - 1,  # the original's nfe counts grid points: nfe - 1 Euler evaluations
        solver="euler",
        audio_scale=float(ref["a_cfg_scale"]),
        emotion_scale=float(ref["e_cfg_scale"]),
        noise=torch.from_numpy(ref["noise"]),
    )
    latents = torch.cat([w.latents for w in windows], dim=1)
    assert latents.shape == ref["motion_latents"].shape
    assert rel_err(latents, ref["motion_latents"], "motion_latents") <= REL_TOL


def test_decoded_frames(pipe, source, ref):
    latents = torch.from_numpy(ref["motion_latents"][0][ref["frame_indices"]])
    frames = torch.cat(list(pipe.iter_frames(source, latents)))
    assert frames.shape == ref["frames"].shape
    error = (frames.cpu() - torch.from_numpy(ref["frames"])).abs()
    max_abs, mean_abs = float(error.max()), float(error.mean())
    outliers = float((error > FRAME_OUTLIER_TOL).float().mean())
    print(f"parity frames: max abs error {max_abs:.2e}, mean {mean_abs:.2e}, share above 1e-2 {outliers:.1e}")
    assert max_abs <= FRAME_TOL or (mean_abs <= FRAME_MEAN_TOL and outliers <= FRAME_OUTLIER_SHARE)


def _write_float_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """32-bit float WAV, so the command reads back exactly the reference samples."""
    import av

    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_generate_command_reproduces_reference_latents(weights_dir, ref, tmp_path):
    """`floatalk generate` end to end: the reference's noise in, the reference's latents out."""
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from floatalk.io.video import read_video_info

    Image.fromarray(ref["image"]).save(tmp_path / "portrait.png")
    _write_float_wav(tmp_path / "speech.wav", ref["waveform"], int(ref["sample_rate"]))
    save_file({"noise": torch.from_numpy(ref["noise"])}, str(tmp_path / "noise.safetensors"))
    label = str(ref["emotion"])
    out = tmp_path / "talk.mp4"
    args = ["generate", "--image", str(tmp_path / "portrait.png"), "--audio", str(tmp_path / "speech.wav")]
    args += ["-o", str(out), "--weights", str(weights_dir), "--no-crop", "--device", DEVICE, "-q"]
    args += ["--emotion", "auto" if label == "none" else label, "--nfe", str(int(ref["nfe"]) - 1)]
    args += [
        "--audio-scale",
        str(float(ref["a_cfg_scale"])),
        "--emotion-scale",
        str(float(ref["e_cfg_scale"])),
    ]
    args += [
        "--noise",
        str(tmp_path / "noise.safetensors"),
        "--save-motion",
        str(tmp_path / "motion.safetensors"),
    ]
    assert cli_main(args) == 0

    latents = load_file(str(tmp_path / "motion.safetensors"))["motion_latents"]
    assert rel_err(latents[None], ref["motion_latents"], "generate command motion_latents") <= REL_TOL
    info = read_video_info(out)
    seconds = ref["waveform"].shape[0] / int(ref["sample_rate"])
    assert info["num_frames"] == ref["motion_latents"].shape[1] == int(np.ceil(seconds * 25))
    assert (info["width"], info["height"]) == (512, 512)
    assert info["has_audio"] and abs(info["audio_duration"] - seconds) < 0.03
