"""Media input/output: portrait images, speech audio and the output MP4 (Pillow + PyAV)."""

from __future__ import annotations

from floatalk.io.audio import audio_duration_frames, load_audio, resample_audio
from floatalk.io.image import image_to_tensor, load_image
from floatalk.io.video import VideoWriter, check_output_path, select_video_encoder
from floatalk.io.video_reader import (
    DecodedFrame,
    VideoError,
    VideoReader,
    iter_video_frames,
    read_video_frames,
    read_video_info,
    video_fps,
)

__all__ = [
    "DecodedFrame",
    "VideoError",
    "VideoReader",
    "VideoWriter",
    "audio_duration_frames",
    "check_output_path",
    "image_to_tensor",
    "iter_video_frames",
    "load_audio",
    "load_image",
    "read_video_frames",
    "read_video_info",
    "resample_audio",
    "select_video_encoder",
    "video_fps",
]
