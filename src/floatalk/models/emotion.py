"""Speech emotion classifier (FLOAT §4.2: w_e) and the emotion label set.

A wav2vec2 backbone (XLSR-53 large in the released model) encodes the whole clip; its last hidden
states are averaged over time and classified by dense -> tanh -> linear into 7 emotions. The
softmax of the logits conditions every frame of the clip.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor, nn

from ..config import EMOTION_LABELS, EmotionConfig
from .audio import build_wav2vec2

__all__ = ["Emotion", "SpeechEmotionClassifier", "emotion_one_hot"]


class Emotion(str, Enum):
    """The 7 emotion classes, in the order of the classifier's outputs."""

    ANGRY = "angry"
    DISGUST = "disgust"
    FEAR = "fear"
    HAPPY = "happy"
    NEUTRAL = "neutral"
    SAD = "sad"
    SURPRISE = "surprise"

    @property
    def index(self) -> int:
        return EMOTION_LABELS.index(self.value)

    @classmethod
    def parse(cls, name: str | Emotion) -> Emotion:
        """Case-insensitive label -> Emotion; unknown labels raise ValueError listing the valid ones."""
        if isinstance(name, Emotion):
            return name
        try:
            return cls(str(name).strip().lower())
        except ValueError:
            raise ValueError(
                f"unknown emotion {name!r}; choose one of {', '.join(e.value for e in cls)}"
            ) from None


def emotion_one_hot(
    emotion: Emotion | str, batch_size: int = 1, num_classes: int = len(EMOTION_LABELS)
) -> Tensor:
    """One-hot w_e (B, E) for a forced emotion (emotion redirection)."""
    out = torch.zeros(batch_size, num_classes)
    out[:, Emotion.parse(emotion).index] = 1.0
    return out


class ClassificationHead(nn.Module):
    """dense -> tanh -> out_proj (dropout is inactive at inference and omitted)."""

    def __init__(self, hidden: int, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, num_labels)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_proj(torch.tanh(self.dense(x)))


class SpeechEmotionClassifier(nn.Module):
    """Normalised waveform (B, N) -> emotion logits (B, E). Names: `wav2vec2`, `classifier.*`."""

    def __init__(self, config: EmotionConfig):
        super().__init__()
        self.config = config
        self.wav2vec2 = build_wav2vec2(config.wav2vec2)
        self.classifier = ClassificationHead(self.wav2vec2.config.hidden_size, len(config.labels))

    def forward(self, waveform: Tensor) -> Tensor:
        hidden = self.wav2vec2(waveform)[0]  # (B, N', hidden)
        return self.classifier(hidden.mean(dim=1))

    def probabilities(self, waveform: Tensor) -> Tensor:
        """softmax over the 7 classes: (B, N) -> (B, E)."""
        return torch.softmax(self.forward(waveform), dim=-1)
