"""Splitting long speech into overlapping chunks so the speech encoders run in bounded memory.

wav2vec2's self-attention costs O(N²) memory in the clip length (about 43 GB per layer for 600 s of
audio with wav2vec2-base), and its first convolution alone holds 512 channels at 3.2 kHz (3.9 GB for
600 s). The original implementation encodes the whole clip at once and so cannot handle long audio.
Clips up to `chunk_frames` frames are still encoded whole, exactly as the original does; longer
clips are encoded chunk by chunk, each chunk seeing `context_frames` extra frames of audio on both
sides, whose outputs are dropped. Peak memory is then set by the chunk size, not the clip length.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

__all__ = ["FrameChunk", "frame_chunks"]


@dataclass(frozen=True)
class FrameChunk:
    """Frames [start, stop) are kept; the encoder sees frames [context_start, context_stop)."""

    start: int
    stop: int
    context_start: int
    context_stop: int

    @property
    def keep(self) -> slice:
        """The kept frames, indexed within the encoder's output for this chunk."""
        return slice(self.start - self.context_start, self.stop - self.context_start)


def frame_chunks(num_frames: int, chunk_frames: int, context_frames: int) -> list[FrameChunk]:
    """Cover [0, num_frames) with chunks of at most `chunk_frames` kept frames.

    One chunk without context when num_frames <= chunk_frames. The last chunk is merged into the
    one before it when it would be shorter than `context_frames`, so no chunk is tiny.
    """
    if num_frames < 1 or chunk_frames < 1 or context_frames < 0:
        raise ValueError("need num_frames >= 1, chunk_frames >= 1, context_frames >= 0")
    if num_frames <= chunk_frames:
        return [FrameChunk(0, num_frames, 0, num_frames)]
    bounds = [*range(0, num_frames, chunk_frames), num_frames]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < max(context_frames, 1):
        del bounds[-2]
    chunks = []
    for start, stop in pairwise(bounds):
        chunks.append(
            FrameChunk(start, stop, max(0, start - context_frames), min(num_frames, stop + context_frames))
        )
    return chunks
