"""Stage-1 training losses: VGG-19 perceptual losses, GAN losses, R1, Gram style matching, weights.

Pure modules and functions (no I/O except `load_vgg19`, which reads a given local file). The
discriminators live in `floatalk.models.discriminator`.
"""

from .adversarial import (
    d_logistic_loss,
    g_nonsaturating_loss,
    gram_matrix,
    gram_style_loss,
    lazy_r1_loss,
    r1_penalty,
)
from .perceptual import (
    DEFAULT_CROP,
    DEFAULT_SCALES,
    PerceptualLoss,
    component_perceptual_loss,
    downsample,
    image_pyramid,
    multiscale_perceptual_loss,
    roi_crop,
)
from .vgg import DEFAULT_LAYERS, VGG19Features, load_vgg19
from .weights import GENERATOR_TERMS, Stage1LossWeights

__all__ = [
    "DEFAULT_CROP",
    "DEFAULT_LAYERS",
    "DEFAULT_SCALES",
    "GENERATOR_TERMS",
    "PerceptualLoss",
    "Stage1LossWeights",
    "VGG19Features",
    "component_perceptual_loss",
    "d_logistic_loss",
    "downsample",
    "g_nonsaturating_loss",
    "gram_matrix",
    "gram_style_loss",
    "image_pyramid",
    "lazy_r1_loss",
    "load_vgg19",
    "multiscale_perceptual_loss",
    "r1_penalty",
    "roi_crop",
]
