"""Settings of `floatalk serve`: what is served, where files live, and every limit (docs/serving.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """One server process: weights loaded once, jobs and streams within these limits.

    Attributes:
        weights: the weights folder (None: the shipped demo weights).
        work_dir: server-owned folder for uploads and results (None: a fresh temporary folder).
        api_key: when set, every endpoint but /health needs it (header ``X-API-Key`` or, for the
            WebSocket and the page, the ``key`` query parameter).
        max_upload_bytes: largest request body part (portrait or speech file).
        max_audio_seconds: longest speech of a job; a stream ends with an error past it.
        max_running_jobs: jobs generated at the same time (the others wait in the queue).
        max_queued_jobs: jobs waiting; one more is refused with 429.
        max_streams: live WebSocket streams at the same time; one more is refused (4429 close code).
        job_ttl_seconds: finished jobs (their files) are deleted after this.
        threads: torch threads (None: torch's default).
    """

    weights: str | None = None
    work_dir: str | None = None
    api_key: str | None = None
    max_upload_bytes: int = 20 * 1024 * 1024
    max_audio_seconds: float = 120.0
    max_running_jobs: int = 1
    max_queued_jobs: int = 8
    max_streams: int = 2
    job_ttl_seconds: float = 3600.0
    threads: int | None = None

    def validate(self) -> ServerSettings:
        for name in ("max_upload_bytes", "max_running_jobs", "max_queued_jobs", "max_streams"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (0 if "queued" in name else 1)
            ):
                raise InputError(f"serve: {name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("max_audio_seconds", "job_ttl_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"serve: {name.replace('_', '-')} must be > 0 seconds, got {value!r}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise InputError("serve: the API key must have at least 8 characters")
        if self.weights is not None and not Path(self.weights).is_dir():
            raise InputError(f"serve: weights folder {self.weights} not found")
        return self
