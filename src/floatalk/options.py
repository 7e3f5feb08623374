"""The user controls of one generation: defaults, help texts and validation, in one place.

`GenerateOptions` is the single source of truth for every control of `floatalk generate`, of
`FloatPipeline.generate` / `write_video`, and of every other consumer of the pipeline (evaluation,
benchmarks, a server): each field carries its default and, in its metadata, the help text and the
command-line flag, from which the CLI builds its arguments (floatalk.cli). `validate` is the one
check of user values; it raises the user-facing InputError with a one-line message. The layers
underneath (sampler, guidance, networks) only assert.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

__all__ = ["CROP_FILLS", "GenerateOptions"]

CROP_FILLS = ("black", "edge", "reflect")
SOLVER_NAMES = ("euler", "midpoint")  # floatalk.flow.solvers.SOLVERS (checked by a test)


def _option(default: Any, help: str, *, flag: str | None = None, metavar: str | None = None) -> Any:
    """A dataclass field whose metadata tells the CLI how to expose it (`flag` None: `--field-name`)."""
    return field(default=default, metadata={"help": help, "flag": flag, "metavar": metavar})


@dataclass(frozen=True)
class GenerateOptions:
    """Every control of a generation run (the CLI flags are in each field's metadata)."""

    emotion: str = _option(
        "auto",
        "auto (predicted from the speech), a label to redirect to (angry, disgust, fear, happy, "
        'neutral, sad, surprise), or a timeline of labels: "0-3.5:happy,3.5-:sad@2" (seconds, @ = '
        "intensity) or a JSON file",
        metavar="LABEL",
    )
    emotion_from: str | None = _option(
        None,
        "frame-wise emotion from the face of a reference video (facial-expression model)",
        metavar="VIDEO",
    )
    pose_from: str | None = _option(
        None,
        "head motion copied from a reference video (or a saved (T, 6) .npy track), retargeted to the "
        "portrait's own pose; needs a model trained with the pose condition",
        metavar="VIDEO",
    )
    still_head: bool = _option(
        False, "hold the portrait's own head pose (lips, eyes and expression still move; pose model)"
    )
    pose_scale: float = _option(1.0, "amplitude of the head motion copied by --pose-from", metavar="S")
    pose_guidance: float = _option(
        1.0,
        "pose guidance g_p: how strongly --pose-from / --still-head override the model's own head motion",
        metavar="G",
    )
    emotion_scale: float = _option(1.0, "emotion guidance g_e, Eq. 14 (stronger emotion: 2-10)", metavar="G")
    audio_scale: float = _option(2.0, "audio guidance g_a, Eq. 14", metavar="G")
    nfe: int = _option(
        10, "velocity evaluations per 2 s window (the original's --nfe 10 is 9 here)", metavar="N"
    )
    solver: str = _option("euler", "ODE solver: euler or midpoint (midpoint needs an even nfe)")
    seed: int | None = _option(None, "random seed (default: random, printed at the end)", metavar="N")
    crop: bool = _option(True, "the image is already a cropped portrait", flag="--no-crop")
    face_index: int | None = _option(None, "which face to animate, largest first (default 0)", metavar="K")
    crop_fill: str = _option(
        "black", "fill outside the photo when cropping: black (original), edge or reflect"
    )
    motion_edits: tuple[tuple[int, float], ...] = _option(
        (),
        "lambda-control, Eq. 15: shift motion coefficient K along the learned basis by DELTA (repeatable)",
        flag="--edit-motion",
        metavar="K=DELTA",
    )
    motion_scale: float = _option(1.0, "scale of the generated motion around the source pose", metavar="S")
    decode_batch_size: int | None = _option(
        None, "frames per decoder call (default 1 on CPU, 8 on GPU)", flag="--batch-size", metavar="N"
    )
    zero_audio: bool = _option(
        False, "ablation: sample the motion without the speech condition (the video keeps the sound)"
    )
    output_size: int | None = _option(
        None,
        "side N of the output frames (default: the model's size, at least 256; 512 for the release)",
        flag="--size",
        metavar="N",
    )
    detail: bool = _option(
        True,
        "upscale frames larger than the model's with bicubic only, not with the portrait's own detail "
        "carried along the model's motion (floatalk.detail)",
        flag="--no-detail",
    )

    paste_back: bool = _option(
        False,
        "put the frames back into the photo, at its size and aspect ratio (the default when the face "
        "was cropped from a larger photo)",
    )
    crop_only: bool = _option(False, "write the square face crop only, not the photo around it")
    max_side: int | None = _option(
        1920,
        "cap the longer side of the output at N pixels (aspect ratio kept, even dimensions)",
        metavar="N",
    )
    watermark: bool = _option(
        True,
        "leave out the invisible watermark that marks every frame as generated (floatalk verify reads it)",
        flag="--no-watermark",
    )
    watermark_id: int | None = _option(
        None, "a number (0 to 2**32 - 1) carried in the watermark after its fixed mark", metavar="N"
    )

    def replace(self, **changes: Any) -> GenerateOptions:
        """A copy with some fields changed (unknown names are an InputError)."""
        names = {f.name for f in dataclasses.fields(self)}
        if unknown := sorted(set(changes) - names):
            raise InputError(
                f"unknown generation option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(cls, options: GenerateOptions | None = None, **changes: Any) -> GenerateOptions:
        """`options` (or the defaults) with keyword changes; `motion_edits` may be a {k: delta} mapping."""
        if isinstance(changes.get("motion_edits"), dict):
            changes["motion_edits"] = tuple(changes["motion_edits"].items())
        base = options if options is not None else cls()
        return base.replace(**changes) if changes else base

    def validate(self, motion_directions: int | None = None) -> GenerateOptions:
        """Raise InputError (one line) for any out-of-range value; returns self.

        Args:
            motion_directions: M, the model's number of motion directions, to check `motion_edits`
                against (None: checked only for K >= 0).
        """
        from .emotion_timeline import EmotionTimeline, looks_like_timeline
        from .models.emotion import Emotion

        if not isinstance(self.emotion, str):
            raise InputError(f"emotion must be a label, a timeline or auto, got {self.emotion!r}")
        if looks_like_timeline(self.emotion):
            EmotionTimeline.parse(self.emotion)
        elif self.emotion.strip().lower() != "auto":
            try:
                Emotion.parse(self.emotion)
            except ValueError as exc:
                raise InputError(f"{exc} (or auto, or a timeline such as 0-2:happy,2-:sad)") from None
        if self.emotion_from is not None and self.emotion.strip().lower() != "auto":
            raise InputError("give either --emotion-from VIDEO or --emotion, not both")
        if self.pose_from is not None and self.still_head:
            raise InputError("give either --pose-from or --still-head, not both")
        if self.pose_scale != 1.0 and self.pose_from is None:
            raise InputError("--pose-scale scales the motion of --pose-from; give --pose-from too")
        if self.pose_guidance != 1.0 and self.pose_from is None and not self.still_head:
            raise InputError("--pose-guidance strengthens a given pose; give --pose-from or --still-head too")
        for name in ("emotion_from", "pose_from"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{name.replace('_', '-')} must be a file path, got {value!r}")
        for name in ("emotion_scale", "audio_scale", "motion_scale", "pose_scale", "pose_guidance"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise InputError(f"{name.replace('_', '-')} must be a finite number >= 0, got {value!r}")
        if isinstance(self.nfe, bool) or not isinstance(self.nfe, int) or self.nfe < 1:
            raise InputError(f"nfe must be an integer >= 1, got {self.nfe!r}")
        if self.solver not in SOLVER_NAMES:
            raise InputError(f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVER_NAMES)}")
        if self.solver == "midpoint" and self.nfe % 2:
            raise InputError(
                f"the midpoint solver uses 2 evaluations per step: give an even nfe, not {self.nfe}"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or not -(2**63) <= self.seed < 2**64
        ):
            raise InputError(f"seed must be an integer from -2**63 to 2**64 - 1, got {self.seed!r}")
        if self.face_index is not None and (not isinstance(self.face_index, int) or self.face_index < 0):
            raise InputError(f"face-index must be >= 0, got {self.face_index}")
        if self.crop_fill not in CROP_FILLS:
            raise InputError(f"crop fill must be one of {', '.join(CROP_FILLS)}, got {self.crop_fill!r}")
        if self.decode_batch_size is not None and (
            not isinstance(self.decode_batch_size, int) or self.decode_batch_size < 1
        ):
            raise InputError(f"decode batch size must be >= 1, got {self.decode_batch_size}")
        if self.output_size is not None and (
            isinstance(self.output_size, bool)
            or not isinstance(self.output_size, int)
            or not 16 <= self.output_size <= 4096
        ):
            raise InputError(f"size must be an integer from 16 to 4096, got {self.output_size!r}")
        if self.paste_back and self.crop_only:
            raise InputError("give either --paste-back or --crop-only, not both")
        if self.paste_back and not self.crop:
            raise InputError("--paste-back needs the face crop: leave out --no-crop")
        if self.max_side is not None and (
            isinstance(self.max_side, bool)
            or not isinstance(self.max_side, int)
            or not 16 <= self.max_side <= 8192
        ):
            raise InputError(f"max-side must be an integer from 16 to 8192, got {self.max_side!r}")
        if self.watermark_id is not None and (
            isinstance(self.watermark_id, bool)
            or not isinstance(self.watermark_id, int)
            or not 0 <= self.watermark_id < 2**32
        ):
            raise InputError(
                f"watermark-id must be an integer from 0 to 2**32 - 1, got {self.watermark_id!r}"
            )
        if self.watermark_id is not None and not self.watermark:
            raise InputError("--watermark-id is carried by the watermark: leave out --no-watermark")
        for name in ("crop", "zero_audio", "detail", "paste_back", "crop_only", "watermark"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        try:
            edits = [(k, float(delta)) for k, delta in self.motion_edits]
        except (TypeError, ValueError):
            raise InputError(
                f"motion edits must be (direction, delta) pairs or a {{direction: delta}} mapping, "
                f"got {self.motion_edits!r}"
            ) from None
        for k, delta in edits:
            if isinstance(k, bool) or not isinstance(k, int):
                raise InputError(f"edit-motion direction must be an integer, got {k!r}")
            if k < 0 or not math.isfinite(delta):
                raise InputError(f"edit-motion needs K >= 0 and a finite DELTA, got {k}={delta}")
            if motion_directions is not None and k >= motion_directions:
                top = motion_directions - 1
                raise InputError(
                    f"edit-motion direction {k} out of range; this model has directions 0..{top}"
                )
        return self
