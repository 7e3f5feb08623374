"""Emotion timelines: different emotion labels (and intensities) for different spans of one clip.

FLOAT conditions every frame on an emotion w_e (§4.2); the original holds one label per clip. A
timeline gives each frame its own: ``"0-3.5:happy,3.5-:sad@2"`` reads "happy from 0 to 3.5 s, then
sad at intensity 2 to the end". The same as JSON (a file or a string)::

    [{"start": 0, "end": 3.5, "label": "happy"}, {"start": 3.5, "label": "sad", "intensity": 2}]

* Times are seconds; a span without an end runs to the end of the clip; spans must not overlap.
  Frames no span covers get `default` (neutral).
* The intensity multiplies the emotion guidance g_e on that span's frames (Eq. 14 with a per-frame
  g_e), so ``@2`` is the span's emotion twice as strong and ``@0`` switches its guidance off.
* Between consecutive spans the label crossfades over `transition` seconds (a raised-cosine ramp
  centred on the boundary), and so does the intensity: no visible jump.

`EmotionTimeline.frames` gives the per-frame emotion (T, E) and intensity (T,) the sampler takes.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import EMOTION_LABELS
from .errors import InputError

__all__ = ["EmotionSpan", "EmotionTimeline", "looks_like_timeline"]

_SPAN = re.compile(
    r"^\s*(?P<start>\d+(?:\.\d*)?)?\s*-\s*(?P<end>\d+(?:\.\d*)?)?\s*:\s*(?P<label>[A-Za-z]+)"
    r"\s*(?:@\s*(?P<intensity>\d+(?:\.\d*)?))?\s*$"
)
#: The syntax, for error messages.
SYNTAX = 'START-END:LABEL[@INTENSITY],... in seconds, e.g. "0-3.5:happy,3.5-:sad@2", or a JSON file'


def looks_like_timeline(text: str) -> bool:
    """True when an --emotion value is a timeline (spans, JSON, or a .json file), not one label."""
    stripped = text.strip()
    return ":" in stripped or stripped.startswith("[") or stripped.lower().endswith(".json")


@dataclass(frozen=True)
class EmotionSpan:
    """One span: `label` from `start` to `end` seconds (None: to the end), guidance x `intensity`."""

    start: float
    end: float | None
    label: str
    intensity: float = 1.0


def _label(name: str) -> str:
    label = str(name).strip().lower()
    if label not in EMOTION_LABELS:
        raise InputError(
            f"unknown emotion {name!r} in the timeline; choose one of {', '.join(EMOTION_LABELS)}"
        )
    return label


@dataclass(frozen=True)
class EmotionTimeline:
    """Spans in time order (see the module docstring)."""

    spans: tuple[EmotionSpan, ...]
    default: str = "neutral"

    def __post_init__(self) -> None:
        if not self.spans:
            raise InputError(f"an emotion timeline needs at least one span: {SYNTAX}")
        for span in self.spans:
            for name, value in (("start", span.start), ("intensity", span.intensity)):
                if not math.isfinite(value) or value < 0:
                    raise InputError(f"emotion timeline: {name} must be a number >= 0, got {value!r}")
            if span.end is not None and not span.end > span.start:
                raise InputError(f"emotion timeline: span {span.start}-{span.end} must end after it starts")
        for a, b in zip(self.spans, self.spans[1:], strict=False):
            if a.end is None or a.end > b.start:
                raise InputError(
                    f"emotion timeline: spans overlap ({a.label} from {a.start} s and {b.label} from "
                    f"{b.start} s); give them in time order, each ending before the next starts"
                )

    @classmethod
    def parse(cls, text: str | os.PathLike) -> EmotionTimeline:
        """From the span syntax, a JSON string, or a path to a JSON file (module docstring)."""
        raw = str(text).strip()
        if raw.lower().endswith(".json"):
            path = Path(raw).expanduser()
            if not path.is_file():
                raise InputError(f"emotion timeline file not found: {path}")
            raw = path.read_text()
        if raw.startswith("["):
            try:
                items = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"emotion timeline is not valid JSON ({exc.msg} at line {exc.lineno})"
                ) from None
            return cls._from_items(items)
        spans = []
        for part in raw.split(","):
            match = _SPAN.match(part)
            if match is None:
                raise InputError(f"cannot read emotion timeline span {part.strip()!r}; expected {SYNTAX}")
            end = match["end"]
            spans.append(
                EmotionSpan(
                    start=float(match["start"] or 0.0),
                    end=None if end is None else float(end),
                    label=_label(match["label"]),
                    intensity=float(match["intensity"] or 1.0),
                )
            )
        return cls(tuple(sorted(spans, key=lambda s: s.start)))

    @classmethod
    def _from_items(cls, items: object) -> EmotionTimeline:
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InputError(
                'an emotion timeline in JSON is a list of {"start", "end", "label", "intensity"}'
            )
        spans = []
        for item in items:
            unknown = sorted(set(item) - {"start", "end", "label", "intensity"})
            if unknown or "label" not in item:
                problem = f"unknown keys {unknown}" if unknown else "a span without a label"
                raise InputError(f"emotion timeline JSON: {problem}; keys are start, end, label, intensity")
            try:
                start = float(item.get("start", 0.0))
                end = None if item.get("end") is None else float(item["end"])
                intensity = float(item.get("intensity", 1.0))
            except (TypeError, ValueError):
                raise InputError(
                    f"emotion timeline JSON: start, end and intensity must be numbers: {item}"
                ) from None
            spans.append(EmotionSpan(start, end, _label(item["label"]), intensity))
        return cls(tuple(sorted(spans, key=lambda s: s.start)))

    def frames(
        self,
        num_frames: int,
        fps: float = 25.0,
        transition: float = 0.3,
        labels: tuple[str, ...] = EMOTION_LABELS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame emotion (T, E) (probability rows: one-hot inside spans, crossfades between) and
        intensity (T,), frame f at time f / fps."""
        t = np.arange(num_frames) / fps
        # piecewise-constant targets: each frame's span (or the default), then smoothed at boundaries
        index = {name: i for i, name in enumerate(labels)}
        onehot = np.zeros((num_frames, len(labels)))
        intensity = np.ones(num_frames)
        onehot[:, index[self.default]] = 1.0
        edges = []
        for span in self.spans:
            inside = (t >= span.start) & (t < (np.inf if span.end is None else span.end))
            onehot[inside] = 0.0
            onehot[inside, index[span.label]] = 1.0
            intensity[inside] = span.intensity
            edges += [span.start] + ([] if span.end is None else [span.end])
        if transition > 0:
            onehot, intensity = _smooth(t, onehot, intensity, sorted(set(edges) - {0.0}), transition)
        return onehot.astype(np.float32), intensity.astype(np.float32)

    def describe(self) -> str:
        """A short text for reports: ``timeline: happy 0-3.5 s, sad@2 from 3.5 s``."""
        parts = []
        for s in self.spans:
            when = f"from {s.start:g} s" if s.end is None else f"{s.start:g}-{s.end:g} s"
            strength = "" if s.intensity == 1.0 else f"@{s.intensity:g}"
            parts.append(f"{s.label}{strength} {when}")
        return "timeline: " + ", ".join(parts)


def _smooth(
    t: np.ndarray, values: np.ndarray, intensity: np.ndarray, edges: list[float], width: float
) -> tuple[np.ndarray, np.ndarray]:
    """Raised-cosine crossfades of `width` seconds centred on each edge, between the two sides' values."""
    values, intensity = values.copy(), intensity.copy()
    for edge in edges:
        near = np.flatnonzero(np.abs(t - edge) < width / 2)
        if len(near) == 0:
            continue
        before, after = near[0] - 1, near[-1] + 1
        if before < 0 or after >= len(t):
            continue
        w = 0.5 - 0.5 * np.cos(np.pi * ((t[near] - (edge - width / 2)) / width))  # 0 -> 1 across the edge
        values[near] = (1 - w)[:, None] * values[before] + w[:, None] * values[after]
        intensity[near] = (1 - w) * intensity[before] + w * intensity[after]
    return values, intensity
