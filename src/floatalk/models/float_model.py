"""The four FLOAT components together, as one container module (pure: reading and writing weights
folders is floatalk.weights)."""

from __future__ import annotations

from torch import nn

from ..config import FloatConfig
from .audio import AudioEncoder
from .emotion import SpeechEmotionClassifier
from .fmt import FlowMatchingTransformer
from .motion_ae import MotionAutoEncoder

__all__ = ["COMPONENT_NAMES", "FloatModel"]

# Folder names of the components in a saved model (and attribute names below).
COMPONENT_NAMES = ("motion_ae", "fmt", "audio_encoder", "emotion")


class FloatModel(nn.Module):
    """Motion auto-encoder, flow-matching transformer, audio encoder and (optional) emotion classifier.

    Args:
        config: the architecture of every component.
        with_emotion: build the speech emotion classifier (without it, emotion must be given).
    """

    def __init__(self, config: FloatConfig, with_emotion: bool = True):
        super().__init__()
        self.config = config
        self.motion_ae = MotionAutoEncoder(config.motion_ae)
        self.fmt = FlowMatchingTransformer(config.fmt)
        self.audio_encoder = AudioEncoder(config.audio)
        self.emotion = SpeechEmotionClassifier(config.emotion) if with_emotion else None

    def components(self) -> dict[str, nn.Module]:
        """The present components by folder name."""
        return {name: getattr(self, name) for name in COMPONENT_NAMES if getattr(self, name) is not None}
