"""One accumulator per metric of `floatalk evaluate videos`: fed clip pair by clip pair, then summed up.

Each :class:`Measure` sees every :class:`ClipPair` (the real and generated frames at 25 fps, cut to the
same length, and the speech), keeps what it needs, and finally writes its numbers, the backbone that
produced them, per-clip values and notices into the report. Networks are built once, in the
constructor, so a wrong weights file stops the run before any clip is read.

Features of the *real* clips do not depend on the generated ones: with a :class:`FeatureCache` they
are computed once per clip, backbone and length, and reused by every later evaluation against the
same real clips (`floatalk evaluate model` compares many settings with one test split).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["ClipPair", "FeatureCache", "Measure", "av_offset", "build_measures"]

SHIPPED = "shipped; not the paper's {what}: not comparable with published numbers"
#: The paper's frame rate: every clip is read at 25 fps (evaluate/videos.py re-exports it).
EVAL_FPS = 25.0
#: Offsets searched by the shipped lip-sync measure, as SyncNet's LSE protocol (±15 frames at 25 fps).
LIPSYNC_MAX_OFFSET = 15


@dataclass
class ClipPair:
    """A real clip and its generated counterpart, aligned: frame i of both is shown at i / 25 s.

    Attributes:
        name: the clips' common name.
        real, generated: uint8 (T, H, W, 3) frames, the same T.
        audio: the speech, mono float32 at 16 kHz from t = 0 (None when neither clip has sound).
        real_path, generated_path: the files.
    """

    name: str
    real: np.ndarray
    generated: np.ndarray
    audio: np.ndarray | None
    real_path: Path
    generated_path: Path


class FeatureCache:
    """Real-clip features on disk, keyed by the clip file's content, the metric, the backbone and T."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = None if folder is None else Path(folder)
        self._digests: dict[Path, str] = {}

    def _digest(self, path: Path) -> str:
        if path not in self._digests:
            from .backbones import sha256_of

            self._digests[path] = sha256_of(path)
        return self._digests[path]

    def get(
        self, kind: str, pair: ClipPair, compute: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """`compute()` for the real clip of `pair`, or its stored result."""
        if self.folder is None:
            return compute()
        key = hashlib.sha256(f"{kind}|{self._digest(pair.real_path)}|{len(pair.real)}".encode()).hexdigest()
        path = self.folder / f"{pair.name}.{key[:20]}.npz"
        if path.is_file():
            with np.load(path) as stored:
                return {k: stored[k] for k in stored.files}
        value = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **value)
        os.replace(partial, path)
        return value


class Measure:
    """A metric's accumulator: `add` every pair, then `finish` into the report."""

    #: the metric's name in --metrics
    key = ""

    def add(self, pair: ClipPair, cache: FeatureCache) -> None:
        raise NotImplementedError

    def finish(self, report: Any) -> None:
        raise NotImplementedError


def _per_clip(report: Any, name: str, values: dict[str, float]) -> None:
    report.clips.setdefault(name, {}).update(values)


# ---------------------------------------------------------------------------------------------------
# Distribution metrics: Fréchet distances of pooled features (Eq. 22)
# ---------------------------------------------------------------------------------------------------


class _Frechet(Measure):
    """Features of every real and generated unit (frame or window), pooled over clips."""

    label = ""

    def __init__(self) -> None:
        self.real: list[np.ndarray] = []
        self.generated: list[np.ndarray] = []

    def features(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backbone_line(self) -> str:
        raise NotImplementedError

    def cache_kind(self) -> str:
        raise NotImplementedError

    def add(self, pair: ClipPair, cache: FeatureCache) -> None:
        self.real.append(cache.get(self.cache_kind(), pair, lambda: {"f": self.features(pair.real)})["f"])
        self.generated.append(self.features(pair.generated))

    def finish(self, report: Any) -> None:
        from .frechet import frechet_distance

        real, generated = np.concatenate(self.real), np.concatenate(self.generated)
        if len(real) < 2 or len(generated) < 2:
            raise InputError(f"{self.label} needs at least 2 samples on each side, got {len(real)}")
        report.metrics[self.label] = frechet_distance(real, generated)
        report.backbones[self.label] = self.backbone_line()


class FIDMeasure(_Frechet):
    key, label = "fid", "FID"

    def __init__(self, weights: str | os.PathLike | None):
        from .fid import InceptionFeatures

        super().__init__()
        self.net = InceptionFeatures(weights)

    def features(self, frames: np.ndarray) -> np.ndarray:
        return self.net([frames])

    def cache_kind(self) -> str:
        return f"fid|{self.net.backbone.sha256}"

    def backbone_line(self) -> str:
        return self.net.backbone.describe()


class FVDMeasure(_Frechet):
    key, label = "fvd", "FVD"

    def __init__(self, weights: str | os.PathLike | None, stride: int):
        from .fvd import I3DFeatures

        super().__init__()
        self.net = I3DFeatures(weights, stride=stride)
        self.stride = stride

    def features(self, frames: np.ndarray) -> np.ndarray:
        return self.net([frames])

    def cache_kind(self) -> str:
        return f"fvd|{self.net.backbone.sha256}|{self.stride}"

    def backbone_line(self) -> str:
        return f"{self.net.backbone.describe()}; 16-frame windows, stride {self.stride}"

    def finish(self, report: Any) -> None:
        windows = sum(len(f) for f in self.generated)
        if windows < 2:
            raise InputError(
                f"FVD needs at least 2 windows of 16 frames, got {windows}: give longer clips "
                "(or a smaller --fvd-stride)"
            )
        super().finish(report)


class _FaceParameterMeasure(Measure):
    """E-FID and P-FID from per-frame face parameters (landmarker blendshapes or 3DMM coefficients).

    Each comes twice: on the parameters as fitted (the paper's) and as ``... motion``, on each clip's
    parameters relative to its own first frame (face_params.motion). With P-FID come the frame-by-frame
    head-pose error against the real clip and the pose jitter (face_params.pose_errors).
    """

    labels = ("E-FID", "P-FID")

    def __init__(self, keys: set[str]):
        self.keys = keys
        self.real: list[Any] = []
        self.generated: list[Any] = []

    def track(self, frames: np.ndarray) -> Any:
        raise NotImplementedError

    def add(self, pair: ClipPair, cache: FeatureCache) -> None:
        from .face_params import FaceParameters

        def real() -> dict[str, np.ndarray]:
            p = self.track(pair.real)
            return {"expression": p.expression, "pose": p.pose}

        stored = cache.get(self.cache_kind(), pair, real)
        self.real.append(FaceParameters(stored["expression"], stored["pose"], ()))
        self.generated.append(self.track(pair.generated))

    def finish(self, report: Any) -> None:
        from .face_params import face_parameter_distances

        distances = face_parameter_distances(self.real, self.generated)
        for key, name, label in zip(self.metric_keys, ("E-FID", "P-FID"), self.labels, strict=True):
            if key in self.keys:
                for suffix in ("", " motion"):
                    report.metrics[label + suffix] = distances[name + suffix]
                    report.backbones[label + suffix] = self.backbone_line()
        if self.metric_keys[1] in self.keys:  # head pose frame by frame, from the same tracks
            from .face_params import pose_errors

            for label, value in pose_errors(self.real, self.generated).items():
                name = label if self.metric_keys[1] == "pfid" else f"{label} (3DMM)"
                report.metrics[name] = value
                report.backbones[name] = self.backbone_line()
        faces, frames = distances["frames with a face"], distances["frames"]
        if min(faces.values()) < frames["real"]:
            report.notices.append(
                f"{self.labels[0]}/{self.labels[1]}: frames with a face: real {faces['real']}, "
                f"generated {faces['generated']} of {frames['real']}"
            )


class LandmarkParameterMeasure(_FaceParameterMeasure):
    """The shipped backbone: MediaPipe Face Landmarker's 52 blendshapes and 6-d head pose."""

    key = "efid+pfid"
    metric_keys = ("efid", "pfid")

    def track(self, frames: np.ndarray) -> Any:
        from .face_params import FaceParameterTracker

        with FaceParameterTracker(fps=EVAL_FPS) as tracker:
            return tracker.track(frames)

    def cache_kind(self) -> str:
        from .backbones import sha256_of
        from .face_params import landmarker_model_path

        return f"landmarker|{sha256_of(landmarker_model_path())}"

    def backbone_line(self) -> str:
        return "MediaPipe Face Landmarker (" + SHIPPED.format(what="3DMM") + ")"


class Face3DParameterMeasure(_FaceParameterMeasure):
    """The paper's backbone: 3DMM expression (64) and pose (angles + translation) per frame."""

    key = "efid3d+pfid3d"
    metric_keys = ("efid3d", "pfid3d")
    labels = ("E-FID (3DMM)", "P-FID (3DMM)")

    def __init__(self, keys: set[str], weights: str | os.PathLike | None):
        from .face3d import Face3DFitter

        super().__init__(keys)
        self.net = Face3DFitter(weights)

    def track(self, frames: np.ndarray) -> Any:
        return self.net.track(frames)

    def cache_kind(self) -> str:
        return f"face3d|{self.net.backbone.sha256}"

    def backbone_line(self) -> str:
        return self.net.backbone.describe()


# ---------------------------------------------------------------------------------------------------
# Identity: the source frame (the real clip's first) against every generated frame (§B.3)
# ---------------------------------------------------------------------------------------------------


class IdentityMeasure(Measure):
    """dlib's face descriptor: median L2 distance to the source frame's face (shipped)."""

    key = "identity"
    label = "identity (median L2)"

    def __init__(self, step: int = 1) -> None:
        from .identity import FaceDescriber

        self.describer = FaceDescriber()
        self.step = step
        self.distances: list[float] = []
        self.frames = 0
        self.clip_values: dict[str, float] = {}

    def add(self, pair: ClipPair, cache: FeatureCache) -> None:
        from .identity import identity_distance

        reference = self.describer.describe(pair.real[0])
        if reference is None:
            raise InputError(f"identity: no face in the first frame of {pair.real_path} (the source image)")
        clip = []
        described = pair.generated[:: self.step]
        for frame in described:
            descriptor = self.describer.describe(frame)
            if descriptor is not None:
                clip.append(identity_distance(reference, descriptor))
        self.frames += len(described)
        self.distances += clip
        self.clip_values[pair.name] = float(np.median(clip)) if clip else math.nan

    def finish(self, report: Any) -> None:
        if not self.distances:
            raise InputError("identity: dlib found no face in any generated frame")
        report.metrics[self.label] = float(np.median(self.distances))
        every = "" if self.step == 1 else f"every {self.step}th generated frame, "
        report.backbones[self.label] = (
            f"dlib face descriptor ({every}" + SHIPPED.format(what="ArcFace CSIM") + ")"
        )
        for name, value in self.clip_values.items():
            _per_clip(report, name, {self.label: value})
        if len(self.distances) < self.frames:
            report.notices.append(
                f"identity: faces in {len(self.distances)} of {self.frames} generated frames"
            )


class CSIMMeasure(Measure):
    """ArcFace cosine similarity of the source frame's face with every generated face (the paper's)."""

    key = "csim"
    label = "CSIM"

    def __init__(self, weights: str | os.PathLike | None):
        from .csim import ArcFaceEmbedder

        self.net = ArcFaceEmbedder(weights)
        self.values: list[float] = []
        self.weights: list[int] = []
        self.frames = 0
        self.clip: dict[str, float] = {}

    def add(self, pair: ClipPair, cache: FeatureCache) -> None:
        from .csim import clip_csim

        value, found = clip_csim(self.net, pair.real[0], pair.generated)
        self.values.append(value)
        self.weights.append(found)
        self.frames += len(pair.generated)
        self.clip[pair.name] = value

    def finish(self, report: Any) -> None:
        total = sum(self.weights)
        if total == 0:
            raise InputError("CSIM: no face in any generated frame")
        report.metrics[self.label] = float(np.average(self.values, weights=self.weights))
        report.backbones[self.label] = self.net.backbone.describe()
        for name, value in self.clip.items():
            _per_clip(report, name, {self.label: value})
        if total < self.frames:
            report.notices.append(f"CSIM: faces in {total} of {self.frames} generated frames")


# ---------------------------------------------------------------------------------------------------
# Lip sync
# ---------------------------------------------------------------------------------------------------


def av_offset(
    opening: np.ndarray, envelope: np.ndarray, max_offset: int = LIPSYNC_MAX_OFFSET
) -> tuple[int, float, float]:
    """The audio-visual offset of a mouth-opening track against the speech envelope.

    The offset k maximises the Pearson r of ``opening[t]`` with ``envelope[t - k]`` over
    ``|k| <= max_offset`` (lipsync.py's lag convention: k > 0 means the mouth moves k frames after
    the sound; ties go to the smaller |k|).

    Returns:
        (k, r at k, r at 0); (0, nan, nan) when no offset can be scored (a mouth that never moves).
    """
    from .lipsync import MIN_VALID_FRAMES, lagged_pearson

    count = min(len(opening), len(envelope))
    limit = max(0, min(max_offset, count - MIN_VALID_FRAMES))
    r_best, lag, r0 = lagged_pearson(opening, envelope, limit)
    return int(lag), float(r_best), float(r0)


class LipSyncMeasure(Measure):
    """The shipped lip-sync measure: mouth opening (face mesh) against the speech envelope.

    Per clip: the offset within ±15 frames that best correlates the generated mouth with the speech,
    the Pearson r there, and at offset 0. The report gives the means over clips (LS-r, LS-r0) and the
    mean |offset| (LS-offset, frames; 0 = in sync). A mouth that never moves has no correlation: its
    clip counts as r = 0 (with a notice).
    """

    key = "lipsync"

    def __init__(self) -> None:
        from .mouth import require_face_mesh

        require_face_mesh()
        self.rows: dict[str, tuple[int, float, float]] = {}
        self.skipped: list[str] = []
        self.still: list[str] = []

    def add(self, pair: ClipPair, cache: FeatureCache) -> None:
        from .lipsync import MIN_VALID_FRAMES, speech_envelope
        from .mouth import MouthTracker

        if pair.audio is None:
            self.skipped.append(f"{pair.name} (no sound)")
            return
        with MouthTracker() as tracker:
            opening = np.array([tracker.process(f)[0] for f in pair.generated])
        if int(np.isfinite(opening).sum()) < MIN_VALID_FRAMES:
            self.skipped.append(f"{pair.name} (face in {int(np.isfinite(opening).sum())} frames)")
            return
        envelope = speech_envelope(pair.audio, 16000, EVAL_FPS, len(opening))
        lag, r_best, r0 = av_offset(opening, envelope)
        if not math.isfinite(r_best):
            self.still.append(pair.name)
            lag, r_best, r0 = 0, 0.0, 0.0
        self.rows[pair.name] = (lag, r_best, r0)

    def finish(self, report: Any) -> None:
        if not self.rows:
            raise InputError(
                "lip sync: no clip could be measured (" + ", ".join(self.skipped[:3]) + "); "
                "it needs a visible face in at least 10 frames and a sound track"
            )
        lags = np.array([r[0] for r in self.rows.values()])
        line = (
            "mouth opening (MediaPipe face mesh) vs speech envelope (" + SHIPPED.format(what="SyncNet") + ")"
        )
        for label, value in (
            ("LS-r", np.mean([r[1] for r in self.rows.values()])),
            ("LS-r0", np.mean([r[2] for r in self.rows.values()])),
            ("LS-offset", np.mean(np.abs(lags))),
        ):
            report.metrics[label] = float(value)
            report.backbones[label] = line
        for name, (lag, r_best, r0) in self.rows.items():
            _per_clip(report, name, {"LS-r": r_best, "LS-r0": r0, "LS-offset": lag})
        if self.skipped:
            report.notices.append(
                f"lip sync: {len(self.skipped)} clips left out: {', '.join(self.skipped[:5])}"
            )
        if self.still:
            report.notices.append(f"lip sync: the mouth never moves in {len(self.still)} clips (r = 0 there)")


class LSEMeasure(Measure):
    """SyncNet LSE-D / LSE-C (the paper's, Wav2Lip protocol)."""

    key = "lse"

    def __init__(self, weights: str | os.PathLike | None):
        from .syncnet import SyncNetScorer

        self.net = SyncNetScorer(weights)
        self.results: dict[str, Any] = {}
        self.skipped: list[str] = []

    def add(self, pair: ClipPair, cache: FeatureCache) -> None:
        if pair.audio is None:
            self.skipped.append(pair.name)
            return
        self.results[pair.name] = self.net.score(pair.generated, pair.audio)

    def finish(self, report: Any) -> None:
        from .syncnet import lse

        if not self.results:
            raise InputError("LSE-D/C: no clip has a sound track")
        for label, value in lse(list(self.results.values())).items():
            report.metrics[label] = float(value)
            report.backbones[label] = self.net.backbone.describe()
        for name, result in self.results.items():
            _per_clip(
                report,
                name,
                {"LSE-D": result.distance, "LSE-C": result.confidence, "LSE-offset": result.offset},
            )
        if self.skipped:
            report.notices.append(f"LSE-D/C: {len(self.skipped)} clips without sound left out")


# ---------------------------------------------------------------------------------------------------
# Reconstruction
# ---------------------------------------------------------------------------------------------------


class LPIPSMeasure(Measure):
    """LPIPS (AlexNet) between each real frame and the generated frame shown at the same time."""

    key = "lpips"
    label = "LPIPS"

    def __init__(self, weights: str | os.PathLike | None):
        from .perceptual import LPIPSDistance

        self.net = LPIPSDistance(weights)
        self.values: list[np.ndarray] = []
        self.clip: dict[str, float] = {}

    def add(self, pair: ClipPair, cache: FeatureCache) -> None:
        distances = self.net(pair.real, pair.generated)
        self.values.append(distances)
        self.clip[pair.name] = float(np.mean(distances))

    def finish(self, report: Any) -> None:
        report.metrics[self.label] = float(np.mean(np.concatenate(self.values)))
        report.backbones[self.label] = self.net.backbone.describe()
        for name, value in self.clip.items():
            _per_clip(report, name, {self.label: value})


def build_measures(
    chosen: tuple[str, ...], weights: dict[str, Any], fvd_stride: int = 1, identity_step: int = 1
) -> list[Measure]:
    """The accumulators for the chosen metrics, networks built (and their files checked) now."""
    out: list[Measure] = []
    if "fid" in chosen:
        out.append(FIDMeasure(weights.get("fid")))
    if "fvd" in chosen:
        out.append(FVDMeasure(weights.get("fvd"), fvd_stride))
    if "csim" in chosen:
        out.append(CSIMMeasure(weights.get("csim")))
    if "identity" in chosen:
        out.append(IdentityMeasure(identity_step))
    landmark = {"efid", "pfid"} & set(chosen)
    if landmark:
        out.append(LandmarkParameterMeasure(landmark))
    face3d = {"efid3d", "pfid3d"} & set(chosen)
    if face3d:
        out.append(Face3DParameterMeasure(face3d, weights.get("face3d")))
    if "lse" in chosen:
        out.append(LSEMeasure(weights.get("lse")))
    if "lipsync" in chosen:
        out.append(LipSyncMeasure())
    if "lpips" in chosen:
        out.append(LPIPSMeasure(weights.get("lpips")))
    return out
