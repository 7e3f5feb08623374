"""How much a world emotion changes a frame, against the mouth's motion (issue 14).

One clip of the synthetic world rendered with the head held still, once per emotion (same portrait,
speech, blinks): mean |emotion - neutral| over the frames, the share of pixels changed by more than
10 levels, and the mean |f_t - f_0| of the neutral clip (the mouth and eyes alone).

    .venv/bin/python tools/expression_pixels.py
"""

import dataclasses

import numpy as np

from floatalk.data.synthetic import SyntheticConfig, plan_clips, render_clip

still = dict(max_roll_deg=0.0, max_yaw_deg=0.0, max_pitch_deg=0.0, max_shift=0.0, max_scale=0.0)
cfg = SyntheticConfig(size=64, num_clips=2, seed=5, **still)
plan = plan_clips(cfg)[0]
ref = {}
for e in ("neutral", "happy", "sad", "angry", "surprise"):
    ref[e] = render_clip(cfg, 0, dataclasses.replace(plan, emotion=e)).frames.astype(np.float32)
n = ref["neutral"]
print("mouth motion within the neutral clip: mean |f_t - f_0| =", np.abs(n - n[:1]).mean().round(2))
for e in ("happy", "sad", "angry", "surprise"):
    d = np.abs(ref[e] - n)
    print(
        e,
        "mean |diff| over the frame",
        d.mean().round(2),
        "pixels changed > 10:",
        (d.max(-1) > 10).mean(axis=(1, 2)).mean().round(3),
    )
