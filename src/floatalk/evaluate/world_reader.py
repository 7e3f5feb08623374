"""Reading the synthetic world's controls back from frames, by fitting its renderer to them.

The synthetic world (:mod:`floatalk.data.synthetic`) draws every frame as a known warp of a known
portrait: head pose (roll, yaw, pitch, translation, scale), brows, mouth corners and the jaw drop. Its
ground truth is in those units. The general-purpose readers measure much less of it on 64² frames:
MediaPipe's landmarker sees a fraction of the world's yaw and pitch, reads the opening mouth as
pitch, and its frame noise is as large as a clip's head motion; the fer expression model reads most
faces of this world as happy. This reader inverts the renderer instead (analysis by synthesis): for
each frame it finds the pose, expression and mouth opening whose rendering of the portrait best
matches the frame, by gradient descent on a robust photometric error over the whole batch of frames
at once, coarse to fine. It needs the portrait the frames were made from (a world clip's
``meta.extra["portrait"]``).

Readings are absolute, in the world's units: angles in degrees from the portrait's rest pose, the
expression amplitudes of the world's tracks. A generated frame is read the same way as a rendered
one; what the renderer cannot draw (decoder blur, colour drift) goes to a per-frame colour gain and
offset and to the residual. The mouth's interior is left out of the error (the renderer paints it).

Emotion is read from the expression amplitudes (smile, brow raise, inner brow) by the nearest of the
world's five expression centres (:data:`EXPRESSION_CENTRES`, the middles of the ranges
:mod:`floatalk.data.synthetic` draws from).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from floatalk.errors import InputError

__all__ = ["EXPRESSION_CENTRES", "WorldReader", "WorldReading", "expression_labels"]

#: (smile, brow_raise, brow_inner) at the middle of each emotion's range in the synthetic world.
EXPRESSION_CENTRES: dict[str, tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0),
    "happy": (0.8, 0.1, 0.0),
    "sad": (-0.7, 0.0, 0.8),
    "angry": (-0.45, -0.45, -0.8),
    "surprise": (0.0, 0.8, 0.0),
}

# Parameter vector per frame, in units that make one Adam step size fit all: angles / 10 deg,
# translation x 20 (fraction of the side), log scale x 25, expression and mouth as they are, then a
# colour gain (log) and offset (/ 255 x 10) per channel.
_ANGLE_UNIT = 10.0
_SHIFT_UNIT = 20.0
_SCALE_UNIT = 25.0
# roll yaw pitch tx ty log_scale | raise inner smile_up smile_down open | gain x3 offset x3 | blur
_NUM_PARAMS = 18
_BLUR_RADIUS = 4  # pixels of the per-frame blur kernel (its sigma is 0.25 + softplus(parameter))
_BLUR_START = -1.1  # softplus(-1.1) + 0.25 = 0.54 px


def _blur_each(img, sigma):
    """Blurs each frame of (F, C, S, S) by its own Gaussian of ``sigma`` (F,) pixels (differentiable).

    What a decoder's output lacks in sharpness is then part of the fit, not of the pose or expression.
    """
    import torch
    import torch.nn.functional as F

    f, c, h, w = img.shape
    x = torch.arange(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (x[None] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (F * C, K)
    r = _BLUR_RADIUS
    out = F.pad(img.reshape(1, f * c, h, w), (r, r, r, r), mode="replicate")
    out = F.conv2d(out, k.view(f * c, 1, 1, -1), groups=f * c)
    return F.conv2d(out, k.view(f * c, 1, -1, 1), groups=f * c).view(f, c, h, w)


def expression_labels(expression: np.ndarray) -> list[str]:
    """The nearest expression centre of each row of (T, 3) (smile, brow_raise, brow_inner)."""
    names = list(EXPRESSION_CENTRES)
    centres = np.array([EXPRESSION_CENTRES[n] for n in names])
    d = ((np.asarray(expression)[:, None, :] - centres[None]) ** 2).sum(-1)
    return [names[k] for k in d.argmin(1)]


@dataclass(frozen=True)
class WorldReading:
    """What :meth:`WorldReader.read` found in T frames.

    Attributes:
        pose: (T, 6) roll, yaw, pitch (degrees), tx, ty (fraction of the side), scale, in the columns
            of :data:`floatalk.data.synthetic.POSE_COLUMNS`.
        expression: (T, 3) smile (positive smile, negative frown), brow_raise, brow_inner.
        mouth_open: (T,) jaw drop in the world's units (1 = the dataset's largest opening).
        residual: (T,) mean absolute colour error of the fit (0..255) outside the mouth.
    """

    pose: np.ndarray
    expression: np.ndarray
    mouth_open: np.ndarray
    residual: np.ndarray

    @property
    def angles(self) -> np.ndarray:
        """(T, 3) yaw, pitch, roll in degrees (the order of the landmarker's pose readings)."""
        return self.pose[:, [1, 2, 0]]

    def emotions(self) -> list[str]:
        """Per frame, the world emotion whose expression is nearest (:func:`expression_labels`)."""
        return expression_labels(self.expression)


class WorldReader:
    """Fits the synthetic world's renderer to frames of one portrait.

    Args:
        portrait: The portrait's name in the world (``meta.extra["portrait"]``), a morph name included.
        size: Frame side in pixels (the dataset's size).
        max_mouth_open: The dataset's ``max_mouth_open`` (its ``dataset.json`` config).
        steps: Adam steps per scale of the coarse-to-fine schedule (blur sigmas 2, 1, 0.5 px).
    """

    def __init__(
        self,
        portrait: str,
        size: int,
        max_mouth_open: float = 0.4,
        steps: tuple[int, int, int] = (40, 25, 15),
    ) -> None:
        from floatalk.data import synthetic

        try:
            self._basis = synthetic.warp_basis(portrait, size)
        except KeyError as exc:
            raise InputError(
                f"unknown world portrait {portrait!r}: give a name from the clip's meta.json"
            ) from exc
        self.size = size
        self.max_open_px = max_mouth_open * self._basis.geometry.mw
        self.steps = steps

    def _render(self, params, with_gap: bool = False):
        """Differentiable rendering of (F, 16) parameters: (F, 3, S, S) 0..255, and the mouth gap."""
        import torch

        from floatalk.data import synthetic

        col = lambda k: params[:, k].view(-1, 1, 1)  # noqa: E731
        roll = torch.deg2rad(col(0) * _ANGLE_UNIT)
        x, y = synthetic.head_positions(
            self._basis,
            torch.cos(roll),
            torch.sin(roll),
            torch.exp(-col(5) / _SCALE_UNIT),
            (col(3) / _SHIFT_UNIT * self.size, col(4) / _SHIFT_UNIT * self.size),
            torch.sin(torch.deg2rad(col(1) * _ANGLE_UNIT)),
            torch.sin(torch.deg2rad(col(2) * _ANGLE_UNIT)),
        )
        raise_, inner, up, down = params[:, 6], params[:, 7], params[:, 8], params[:, 9]
        amplitudes = torch.stack([raise_, inner, torch.relu(-inner), up, down], dim=1)
        x, y = synthetic.local_positions(self._basis, x, y, amplitudes)
        x, y, gap, _, _ = synthetic.jaw_positions(self._basis, x, y, col(10) * self.max_open_px)
        img = synthetic.sample_portrait(self._basis, x, y)  # (F, 3, S, S)
        gain = torch.exp(params[:, 11:14])[:, :, None, None]
        offset = (params[:, 14:17] * (255.0 / 10.0))[:, :, None, None]
        return _blur_each(img, 0.25 + torch.nn.functional.softplus(params[:, 17])) * gain + offset, gap

    def read(self, frames: np.ndarray) -> WorldReading:
        """Reads (T, S, S, 3) uint8 RGB frames of the portrait.

        Returns:
            The fitted controls of every frame (:class:`WorldReading`).
        """
        import torch
        import torch.nn.functional as F

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != (self.size, self.size, 3):
            raise InputError(
                f"frames must be (T, {self.size}, {self.size}, 3) RGB; got {frames.shape}: "
                "give the frames at the dataset's size"
            )
        target = torch.from_numpy(frames.astype(np.float32)).permute(0, 3, 1, 2)
        n = len(frames)
        params = torch.zeros(n, _NUM_PARAMS)
        params[:, 17] = _BLUR_START
        params.requires_grad_(True)
        nonneg = [8, 9, 10]  # smile up / down amplitudes and the mouth opening

        def blur(img, sigma: float):
            r = max(1, round(2.5 * sigma))
            k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
            k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
            img = F.conv2d(F.pad(img, (r, r, 0, 0), mode="replicate"), k, groups=3)
            return F.conv2d(F.pad(img, (0, 0, r, r), mode="replicate"), k.transpose(2, 3), groups=3)

        with torch.enable_grad():
            for sigma, steps in zip((2.0, 1.0, 0.5), self.steps):
                want = blur(target, sigma)
                opt = torch.optim.Adam([params], lr=0.05 if sigma > 1.5 else 0.02)
                for _ in range(steps):
                    opt.zero_grad()
                    img, gap = self._render(params)
                    keep = (gap.detach() <= 0).unsqueeze(1).float()
                    diff = (blur(img, sigma) - want) * keep
                    loss = torch.sqrt(diff * diff + 4.0).sum() / (keep.sum() * 3 + 1)  # Charbonnier, 2 levels
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        params[:, nonneg] = params[:, nonneg].clamp_min(0.0)
        with torch.no_grad():
            img, gap = self._render(params)
            keep = (gap <= 0).unsqueeze(1).float()
            residual = ((img - target).abs() * keep).sum((1, 2, 3)) / (keep.sum((1, 2, 3)) * 3 + 1)
            p = params.numpy().astype(np.float64)
        pose = np.stack(
            [
                p[:, 0] * _ANGLE_UNIT,
                p[:, 1] * _ANGLE_UNIT,
                p[:, 2] * _ANGLE_UNIT,
                p[:, 3] / _SHIFT_UNIT,
                p[:, 4] / _SHIFT_UNIT,
                np.exp(p[:, 5] / _SCALE_UNIT),
            ],
            axis=1,
        )
        expression = np.stack([p[:, 8] - p[:, 9], p[:, 6], p[:, 7]], axis=1)
        return WorldReading(pose=pose, expression=expression, mouth_open=p[:, 10], residual=residual.numpy())
