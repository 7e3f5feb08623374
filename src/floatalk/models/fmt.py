"""Flow Matching Transformer (FLOAT §4.2, Fig. 2): the velocity field v_theta over motion latents.

Notation (paper -> code):
    B          batch
    L, L'      current / previous (context) frames per window: `clip_frames`, `context_frames`
    d          motion latent size (`latent_dim`); h transformer width (`hidden_dim`)
    x_t        noisy current motion latents at flow time t, (B, L, d)
    x_prev     clean motion latents of the previous L' frames, (B, L', d)
    a, a_prev  per-frame speech features of the current / previous frames, (B, L, d_a), (B, L', d_a)
    w_{r->S}   motion of the source image (reference motion), (B, d)
    w_e        emotion probabilities, (B, E)
    c_t        per-frame condition, (B, L'+L, h)

The transformer sees the L'+L frames [x_prev, x_t] with a fixed sinusoidal position table. Every
frame f gets its own condition c_t^f = Linear([w_{r->S}, a^f, w_e]) + Emb(t), which drives
frame-wise adaLN-Zero (shift, scale, gate) in every block; attention is banded to +-T frames.
The output is a velocity for all L'+L frames (the sampler uses the last L).

The module is pure: no dropout of conditions (training does that, see flow/conditions.py), no
guidance and no ODE. Attribute names follow the released checkpoint (prefix `fmt.`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import FMTConfig
from ..nn.attention import BandedSelfAttention, band_mask
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
    """v_theta(x_t, t | x_prev, a_prev, a, w_{r->S}, w_e) over one window of L'+L frames."""

    def __init__(self, config: FMTConfig):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        n = config.sequence_frames
        self.register_buffer("pos_embed", sinusoidal_positions(n, h)[None], persistent=False)  # (1, N, h)
        self.register_buffer("allowed", band_mask(n, config.attention_window), persistent=False)  # (N, N)
        self.x_embedder = SequenceEmbed(config.latent_dim, h)
        self.t_embedder = TimestepEmbedder(h, config.timestep_dim)
        self.c_embedder = nn.Linear(config.latent_dim + config.audio_dim + config.num_emotions, h)
        self.blocks = nn.ModuleList(
            [FMTBlock(h, config.num_heads, config.mlp_ratio) for _ in range(config.depth)]
        )
        self.decoder = OutputLayer(h, config.latent_dim)
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
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.decoder.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.decoder.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.decoder.linear.weight)
        nn.init.zeros_(self.decoder.linear.bias)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        audio: Tensor,
        source_motion: Tensor,
        emotion: Tensor,
        prev_motion: Tensor,
        prev_audio: Tensor,
    ) -> Tensor:
        """Velocity of the whole window.

        Args:
            x: x_t, (B, L, d).
            t: flow time, () or (B,) in [0, 1].
            audio: a^{1:L}, (B, L, d_a).
            source_motion: w_{r->S}, (B, d).
            emotion: w_e, (B, E).
            prev_motion: x_prev, (B, L', d).
            prev_audio: a_prev, (B, L', d_a).

        Returns:
            (B, L'+L, d) velocity; frames [L':] are the current window.
        """
        n = prev_motion.shape[1] + x.shape[1]
        if n != self.pos_embed.shape[1]:
            raise ValueError(f"FMT expects L'+L = {self.pos_embed.shape[1]} frames, got {n}")
        t_emb = self.t_embedder(t).unsqueeze(1)  # (1 or B, 1, h)
        seq = self.x_embedder(torch.cat([prev_motion, x], dim=1)) + self.pos_embed  # (B, N, h)
        a = torch.cat([prev_audio, audio], dim=1)  # (B, N, d_a)
        ref = source_motion.unsqueeze(1).expand(-1, n, -1)  # (B, N, d)
        emo = emotion.to(a.dtype).unsqueeze(1).expand(-1, n, -1)  # (B, N, E)
        c = self.c_embedder(torch.cat([ref, a, emo], dim=-1)) + t_emb  # (B, N, h)
        for block in self.blocks:
            seq = block(seq, c, self.allowed)
        return self.decoder(seq, c)  # (B, N, d)
