"""Flow Matching Transformer (FLOAT §4.2, Fig. 2): the velocity field v_theta over motion latents.

Notation (paper -> code):
    B          batch
    L, L'      current / previous (context) frames per window: `clip_frames`, `context_frames`
    d          motion latent size (`latent_dim`); h transformer width (`hidden_dim`)
    x_t        noisy current motion latents at flow time t, (B, L, d)
    x_prev     clean motion latents of the previous L' frames, (B, L', d)
    a, a_prev  per-frame speech features of the current / previous frames, (B, L, d_a), (B, L', d_a)
    w_{r->S}   motion of the source image (reference motion), (B, d)
    w_e        emotion probabilities, (B, E), or frame-wise (B, L'+L, E) ("I2E", §5.5)
    p          head pose per frame minus the source frame's, (B, L'+L, P) ("A + 3DPose", §5.4, Table 2)
    c_t        per-frame condition, (B, L'+L, h)

The transformer sees the L'+L frames [x_prev, x_t] with a fixed sinusoidal position table. Every
frame f gets its own condition c_t^f = Linear([w_{r->S}, a^f, w_e^f, Emb_p(p^f)]) + Emb(t), which
drives frame-wise adaLN-Zero (shift, scale, gate) in every block; attention is banded to +-T frames.
The output is a velocity for all L'+L frames (the sampler uses the last L).

Extensions, all off in the released model (FMTConfig): the pose condition (`pose_dim` > 0), the
head's displacement p from the source frame's pose, Emb_p(p) = [Linear((p - mean) / std), 1], and
[0, 0] for a frame whose pose is NaN (the null pose of condition dropout and pose-free sampling); the
cross-attention predictor (`predictor="cross-attention"`, Table 3), whose blocks attend over the
frames and their condition tokens at once (nn.attention.BandedContextAttention) instead of adaLN.
Under a diffusion process (`process`) the same network predicts ε or x0 instead of a velocity.

The module is pure: no dropout of conditions (training does that, see flow/conditions.py), no
guidance and no ODE. Attribute names follow the released checkpoint (prefix `fmt.`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..config import FMTConfig
from ..nn.attention import BandedContextAttention, BandedSelfAttention, band_mask
from ..nn.embeddings import TimestepEmbedder, sinusoidal_positions

__all__ = ["FlowMatchingTransformer"]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Frame-wise adaLN: x * (1 + scale) + shift, all (B, N, h)."""
    return x * (1 + scale) + shift


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


class SequenceEmbed(nn.Module):
    """Linear projection of motion latents to the transformer width (`x_embedder.proj`)."""

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class FeedForward(nn.Module):
    """fc1 -> GELU (tanh approximation) -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FMTBlock(nn.Module):
    """Pre-norm transformer block with frame-wise adaLN-Zero (DiT, applied per frame)."""

    def __init__(self, hidden_dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.attn = BandedSelfAttention(hidden_dim, num_heads)
        self.norm2 = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(hidden_dim, int(hidden_dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, 6 * hidden_dim))

    def forward(self, x: Tensor, c: Tensor, allowed: Tensor) -> Tensor:
        """x, c: (B, N, h); allowed: (N, N) band -> (B, N, h)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), allowed)
        x = x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class ContextBlock(nn.Module):
    """Pre-norm block of the cross-attention predictor: frames attend to frames and conditions at once."""

    def __init__(self, hidden_dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.norm_context = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.attn = BandedContextAttention(hidden_dim, num_heads)
        self.norm2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = FeedForward(hidden_dim, int(hidden_dim * mlp_ratio))

    def forward(self, x: Tensor, c: Tensor, allowed: Tensor) -> Tensor:
        """x, c: (B, N, h); allowed: (N, N) band -> (B, N, h)."""
        x = x + self.attn(self.norm1(x), self.norm_context(c), allowed)
        return x + self.mlp(self.norm2(x))


class PoseEmbed(nn.Module):
    """Emb_p(p) = [Linear((p - mean) / std), 1] for a frame with a pose, [0, 0] for a NaN frame.

    p is the head's displacement from the source frame's pose (6 numbers per frame, see FMTConfig);
    the output has P + 1 channels, the last one saying whether the frame has a pose.
    The null pose (condition dropout, pose-free sampling: the model's own head motion) must differ
    from a still head (p = 0). An earlier version gave the null a learned vector instead of the flag:
    under the DiT init (zero biases) the null and Emb_p(0) were both exactly zero, and a model
    fine-tuned from a pose-free one (whose pose columns start at zero) got no gradient that told them
    apart, so ``--still-head`` gave the free head motion. The flag separates them whatever the
    weights, and its column of the condition map learns from the first step.
    The author's hint for "A + 3DPose" is Linear(6->6) + LayerNorm; a LayerNorm over the 6 numbers
    of one frame would keep only their direction and lose how far the head turned (a still head,
    p = 0, would be undefined), so each channel is standardised with the training data's
    statistics instead.
    """

    def __init__(self, pose_dim: int, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean or (0.0,) * pose_dim), persistent=False)
        self.register_buffer("std", torch.tensor(std or (1.0,) * pose_dim), persistent=False)
        self.proj = nn.Linear(pose_dim, pose_dim)

    def forward(self, pose: Tensor) -> Tensor:
        """pose: (B, N, P), NaN rows for no pose -> (B, N, P + 1)."""
        present = torch.isfinite(pose).all(dim=-1, keepdim=True)  # (B, N, 1)
        normalised = (pose - self.mean.to(pose.dtype)) / self.std.to(pose.dtype)
        embedded = self.proj(torch.where(present, normalised, 0.0))
        flag = present.to(embedded.dtype)
        return torch.cat([embedded * flag, flag], dim=-1)


class ContextOutputLayer(nn.Module):
    """Output of the cross-attention predictor: LayerNorm and projection, no modulation (`decoder`)."""

    def __init__(self, hidden_dim: int, out_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.linear = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        return self.linear(self.norm_final(x))


class OutputLayer(nn.Module):
    """Final adaLN (shift, scale) and projection back to the latent size (`decoder`)."""

    def __init__(self, hidden_dim: int, out_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, 2 * hidden_dim))
        self.linear = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# --------------------------------------------------------------------------------------------------
# Transformer
# --------------------------------------------------------------------------------------------------


class FlowMatchingTransformer(nn.Module):
    """v_theta(x_t, t | x_prev, a_prev, a, w_{r->S}, w_e[, p]) over one window of L'+L frames."""

    def __init__(self, config: FMTConfig):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        n = config.sequence_frames
        self.register_buffer("pos_embed", sinusoidal_positions(n, h)[None], persistent=False)  # (1, N, h)
        self.register_buffer("allowed", band_mask(n, config.attention_window), persistent=False)  # (N, N)
        self.x_embedder = SequenceEmbed(config.latent_dim, h)
        self.t_embedder = TimestepEmbedder(h, config.timestep_dim)
        if config.pose_dim:
            self.pose_embedder = PoseEmbed(config.pose_dim, config.pose_mean, config.pose_std)
        pose_channels = config.pose_dim + 1 if config.pose_dim else 0  # Emb_p(p) and its presence flag
        cond_dim = config.latent_dim + config.audio_dim + config.num_emotions + pose_channels
        self.c_embedder = nn.Linear(cond_dim, h)
        block = FMTBlock if config.predictor == "adaln" else ContextBlock
        self.blocks = nn.ModuleList(
            [block(h, config.num_heads, config.mlp_ratio) for _ in range(config.depth)]
        )
        output = OutputLayer if config.predictor == "adaln" else ContextOutputLayer
        self.decoder = output(h, config.latent_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT recipe: Xavier-uniform linears with zero bias, N(0, 0.02) time MLP, zero adaLN and output.

        With this init the transformer outputs exactly zero (adaLN-Zero).
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            if isinstance(block, FMTBlock):
                nn.init.zeros_(block.adaLN_modulation[-1].weight)
                nn.init.zeros_(block.adaLN_modulation[-1].bias)
            else:  # cross-attention predictor: residual branches start at zero instead of their gates
                nn.init.zeros_(block.attn.proj.weight)
                nn.init.zeros_(block.mlp.fc2.weight)
        if isinstance(self.decoder, OutputLayer):
            nn.init.zeros_(self.decoder.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.decoder.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.decoder.linear.weight)
        nn.init.zeros_(self.decoder.linear.bias)

    def upgrade_state(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A state dict saved by an earlier version, in this version's names (used by strict loads).

        Pose models saved before the presence flag (PoseEmbed) had no flag column in c_embedder and a
        vector ``pose_embedder.null`` (zero before it was learned) for the null pose. They convert
        exactly: with W_p the pose columns, the flag column is -W_p null and the bias gains W_p null,
        so a frame with a pose gets W_p Emb_p(p) + b and the null pose W_p null + b, as before.
        """
        state = dict(state)
        null = state.pop("pose_embedder.null", None)
        key = "c_embedder.weight"
        if self.config.pose_dim and "pose_embedder.proj.weight" in state and key in state:
            weight = state[key]
            if weight.shape[1] == self.c_embedder.in_features - 1:
                pose_columns = weight[:, -self.config.pose_dim :]
                if null is None:
                    null = weight.new_zeros(self.config.pose_dim)
                shift = pose_columns @ null.to(weight.dtype)
                state[key] = torch.cat([weight, -shift[:, None]], dim=1)
                state["c_embedder.bias"] = state["c_embedder.bias"] + shift
        return state

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        audio: Tensor,
        source_motion: Tensor,
        emotion: Tensor,
        prev_motion: Tensor,
        prev_audio: Tensor,
        pose: Tensor | None = None,
    ) -> Tensor:
        """Velocity of the whole window.

        Args:
            x: x_t, (B, L, d).
            t: flow time, () or (B,) in [0, 1].
            audio: a^{1:L}, (B, L, d_a).
            source_motion: w_{r->S}, (B, d).
            emotion: w_e, (B, E), or one per frame of the window, (B, L'+L, E).
            prev_motion: x_prev, (B, L', d).
            prev_audio: a_prev, (B, L', d_a).
            pose: p, (B, L'+L, P) head pose per frame of the window relative to the source frame's,
                only for a model with pose_dim > 0; None (or NaN frames) is the null pose.

        Returns:
            (B, L'+L, d) velocity (or ε / x0 under a diffusion process); frames [L':] are the
            current window.
        """
        n = prev_motion.shape[1] + x.shape[1]
        if n != self.pos_embed.shape[1]:
            raise ValueError(f"FMT expects L'+L = {self.pos_embed.shape[1]} frames, got {n}")
        t_emb = self.t_embedder(t).unsqueeze(1)  # (1 or B, 1, h)
        seq = self.x_embedder(torch.cat([prev_motion, x], dim=1)) + self.pos_embed  # (B, N, h)
        a = torch.cat([prev_audio, audio], dim=1)  # (B, N, d_a)
        ref = source_motion.unsqueeze(1).expand(-1, n, -1)  # (B, N, d)
        emotion = emotion.to(a.dtype)
        emo = emotion.unsqueeze(1).expand(-1, n, -1) if emotion.dim() == 2 else emotion  # (B, N, E)
        parts = [ref, a, emo]
        if self.config.pose_dim:
            if pose is None:
                pose = a.new_full((a.shape[0], n, self.config.pose_dim), float("nan"))
            parts.append(self.pose_embedder(pose.to(a.dtype)).expand(a.shape[0], -1, -1))  # (B, N, P+1)
        elif pose is not None:
            raise ValueError("this FMT was built without a pose condition (pose_dim = 0); pass pose=None")
        c = self.c_embedder(torch.cat(parts, dim=-1)) + t_emb  # (B, N, h)
        for block in self.blocks:
            seq = block(seq, c, self.allowed)
        return self.decoder(seq, c)  # (B, N, d)
