"""REST jobs of `floatalk serve`: a bounded queue of whole-file generations in a server-owned folder.

A job is checked when it is submitted (options, portrait with a face, readable speech within the
length limit), so a bad request fails at once with nothing left behind; then it waits in the queue,
runs `FloatPipeline.write_video` (whose MP4 appears only once complete) and keeps its result until
``job_ttl_seconds`` after it finished. A server started on the folder of one that was killed deletes
what that one left. Cancelling a queued or running job stops it at the next
decoded batch and deletes its folder. Job ids are random 128-bit hex strings; nothing a client
sends becomes part of a path.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..options import GenerateOptions

__all__ = ["Job", "JobManager", "QueueFullError"]

#: What a job can be.
STATES = ("queued", "running", "done", "failed", "cancelled")


class QueueFullError(Exception):
    """More jobs than the queue holds (HTTP 429)."""


class _CancelledError(Exception):
    pass


@dataclass
class Job:
    """One generation: its folder, options and progress."""

    id: str
    folder: Path
    portrait: Path
    speech: Path
    options: GenerateOptions
    total_frames: int
    state: str = "queued"
    frames_done: int = 0
    error: str | None = None
    seed: int | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def video(self) -> Path:
        return self.folder / "video.mp4"

    def describe(self) -> dict:
        return {
            "id": self.id,
            "status": self.state,
            "progress": round(self.frames_done / self.total_frames, 4) if self.total_frames else 0.0,
            "frames_done": self.frames_done,
            "frames_total": self.total_frames,
            "seed": self.seed,
            "error": self.error,
            "video": f"/jobs/{self.id}/video" if self.state == "done" else None,
        }


class JobManager:
    """The queue, its worker threads and the cleaner (ServerSettings limits)."""

    def __init__(self, pipe, settings, root: Path) -> None:
        self.pipe, self.settings = pipe, settings
        self.root = root / "jobs"
        # jobs do not outlive their server: what a killed one left (unfinished, partial files) goes
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.pending: queue.Queue[Job | None] = queue.Queue()
        self.stopping = threading.Event()
        self.workers = [
            threading.Thread(target=self._work, name=f"floatalk-job-{i}", daemon=True)
            for i in range(settings.max_running_jobs)
        ]
        self.cleaner = threading.Thread(target=self._clean, name="floatalk-cleaner", daemon=True)
        for thread in (*self.workers, self.cleaner):
            thread.start()

    # ------------------------------------------------------------------------------------- requests

    def counts(self) -> dict[str, int]:
        with self.lock:
            states = [j.state for j in self.jobs.values()]
        return {s: states.count(s) for s in STATES}

    def submit(
        self, portrait: bytes, portrait_name: str, speech: bytes, speech_name: str, options: GenerateOptions
    ) -> Job:
        """Check and queue a job; InputError (400) or QueueFullError (429) leave no files."""
        with self.lock:
            waiting = sum(j.state == "queued" for j in self.jobs.values())
            if waiting >= self.settings.max_queued_jobs:
                raise QueueFullError(f"the queue is full ({waiting} jobs waiting); try again later")
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir()
        try:
            portrait_path = folder / f"portrait{safe_suffix(portrait_name, IMAGE_SUFFIXES, '.img')}"
            speech_path = folder / f"speech{safe_suffix(speech_name, AUDIO_SUFFIXES, '.bin')}"
            portrait_path.write_bytes(portrait)
            speech_path.write_bytes(speech)
            total = check_inputs(
                self.pipe, portrait_path, speech_path, options, self.settings.max_audio_seconds
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = Job(job_id, folder, portrait_path, speech_path, options, total)
        with self.lock:
            self.jobs[job_id] = job
        self.pending.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Stop a job (queued or running) and delete its files; a finished one is deleted."""
        job = self.get(job_id)
        if job is None:
            return None
        job.cancel.set()
        with self.lock:
            if job.state in ("queued", "done", "failed"):
                job.state = "cancelled"
                job.finished = time.time()
                shutil.rmtree(job.folder, ignore_errors=True)
        return job

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel everything, wait for the workers: no partial file stays."""
        self.stopping.set()
        with self.lock:
            for job in self.jobs.values():
                job.cancel.set()
        for _ in self.workers:
            self.pending.put(None)
        for thread in self.workers:
            thread.join(timeout)
        with self.lock:
            for job in self.jobs.values():
                if job.state != "done":
                    shutil.rmtree(job.folder, ignore_errors=True)

    # -------------------------------------------------------------------------------------- workers

    def _work(self) -> None:
        while not self.stopping.is_set():
            job = self.pending.get()
            if job is None:
                return
            with self.lock:
                if job.cancel.is_set() or job.state != "queued":
                    continue
                job.state = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(done: int, total: int) -> None:
            job.frames_done = done
            if job.cancel.is_set():
                raise _CancelledError

        try:
            result = self.pipe.write_video(
                str(job.portrait), str(job.speech), job.video, job.options, progress=progress
            )
            state, error = "done", None
            job.seed = result.seed
        except _CancelledError:
            state, error = "cancelled", None
        except InputError as exc:
            state, error = "failed", str(exc)
        except Exception as exc:  # a fault of ours: the job fails, the server stays up
            state, error = "failed", f"internal error ({type(exc).__name__}: {exc})"
        with self.lock:
            job.state, job.error, job.finished = state, error, time.time()
            if state != "done":
                shutil.rmtree(job.folder, ignore_errors=True)
            else:  # the inputs are not needed any more
                for path in (job.portrait, job.speech):
                    path.unlink(missing_ok=True)

    def _clean(self) -> None:
        while not self.stopping.wait(min(30.0, self.settings.job_ttl_seconds / 4)):
            self.clean_expired()

    def clean_expired(self, now: float | None = None) -> int:
        """Forget jobs finished more than job_ttl_seconds ago and delete their files; how many."""
        now = time.time() if now is None else now
        with self.lock:
            expired = [
                j
                for j in self.jobs.values()
                if j.finished is not None and now - j.finished > self.settings.job_ttl_seconds
            ]
            for job in expired:
                shutil.rmtree(job.folder, ignore_errors=True)
                del self.jobs[job.id]
        return len(expired)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4", ".mkv", ".mov")


def safe_suffix(name: str, allowed: tuple[str, ...], default: str) -> str:
    suffix = Path(name or "").suffix.lower()
    return suffix if suffix in allowed else default


def check_inputs(pipe, portrait: Path, speech: Path, options: GenerateOptions, max_seconds: float) -> int:
    """InputError unless the portrait has a usable face and the speech is readable and short
    enough; the number of video frames the speech gives."""
    from ..io.audio import SpeechAudio
    from ..models.audio import num_video_frames

    options.validate(pipe.motion_directions)
    pipe._check_conditions(options)
    pipe.prepare_portrait(str(portrait), options)  # decodes the image, finds and crops the face
    audio = SpeechAudio.from_file(speech, pipe.sample_rate)
    seconds = audio.num_samples / pipe.sample_rate
    if seconds > max_seconds:
        raise InputError(f"the speech is {seconds:.1f} s long; this server takes at most {max_seconds:g} s")
    if audio.num_samples == 0:
        raise InputError("the speech file has no samples")
    return num_video_frames(audio.num_samples, pipe.sample_rate, pipe.fps)
