"""`floatalk serve`: the pipeline behind HTTP (REST jobs) and a WebSocket (live streams), plus a page.

One process, the weights loaded once (docs/serving.md has the protocol):

* ``GET /health``: status and counts (never needs the key).
* ``GET /``: the web page (static/index.html).
* ``POST /portraits`` (multipart ``portrait``): check and keep a portrait for streams; its id.
* ``POST /jobs`` (multipart ``portrait`` or ``portrait_id``, ``speech``, ``options`` as JSON):
  a job id (202); ``GET /jobs/{id}``: status and progress; ``GET /jobs/{id}/video``: the MP4;
  ``DELETE /jobs/{id}``: cancel and delete.
* ``WS /stream``: a JSON start message, binary 16 kHz PCM chunks in, frames out as they are final.

Errors are JSON ``{"error": "..."}`` with the fitting status: 400 bad input (no face, corrupt
audio, bad option), 401 missing or wrong key, 404 unknown id, 409 not ready, 413 too large,
422 a malformed request, 429 queue full.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError
from ..options import GenerateOptions
from .jobs import IMAGE_SUFFIXES, JobManager, QueueFullError, safe_suffix
from .settings import ServerSettings

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
_ID = re.compile(r"^[0-9a-f]{32}$")
#: Option names a client may set (every GenerateOptions field but the ones naming server files).
CLIENT_OPTIONS = tuple(
    name for name in GenerateOptions.__dataclass_fields__ if name not in ("emotion_from", "pose_from")
)
#: Close code of a refused stream (the server holds max_streams already): "try again later".
WS_BUSY = 1013
WS_POLICY = 1008


def parse_options(text: str | dict | None) -> GenerateOptions:
    """Client options (a JSON object) -> GenerateOptions; InputError (400) for anything unknown or bad."""
    if text is None or text == "":
        values = {}
    elif isinstance(text, dict):
        values = text
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"options must be a JSON object ({exc.msg} at character {exc.pos})") from None
    if not isinstance(values, dict):
        raise InputError('options must be a JSON object, e.g. {"emotion": "happy", "seed": 0}')
    if unknown := sorted(set(values) - set(CLIENT_OPTIONS)):
        raise InputError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(CLIENT_OPTIONS)}")
    if "motion_edits" in values:
        edits = values["motion_edits"]
        if isinstance(edits, dict):
            edits = list(edits.items())
        try:
            values["motion_edits"] = tuple((int(k), float(v)) for k, v in edits)
        except (TypeError, ValueError):
            raise InputError('motion_edits must be {"K": DELTA, ...} or [[K, DELTA], ...]') from None
    try:
        return GenerateOptions(**values)
    except TypeError as exc:
        raise InputError(f"bad options: {exc}") from None


def create_app(settings: ServerSettings, pipe=None):
    """The FastAPI application; `pipe` (a FloatPipeline) is loaded from settings.weights when None."""
    settings = settings.validate()
    if pipe is None:
        from ..pipeline import FloatPipeline
        from ..weights import resolve_weights

        pipe = FloatPipeline.from_pretrained(resolve_weights(settings.weights))
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    owned = settings.work_dir is None
    root = Path(settings.work_dir or tempfile.mkdtemp(prefix="floatalk-serve-"))
    root.mkdir(parents=True, exist_ok=True)
    portraits = root / "portraits"
    portraits.mkdir(exist_ok=True)
    jobs = JobManager(pipe, settings, root)
    live = {"streams": 0}
    live_lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        jobs.shutdown()  # graceful: running jobs stop, no partial file stays
        if owned:
            shutil.rmtree(root, ignore_errors=True)

    app = FastAPI(
        lifespan=lifespan,
        title="floatalk",
        summary="Audio-driven talking portraits (FLOAT): REST jobs and live WebSocket streams.",
        version="1",
    )
    app.state.jobs, app.state.root, app.state.pipe = jobs, root, pipe

    class RefusedError(Exception):
        def __init__(self, status: int, message: str):
            self.status, self.message = status, message

    @app.exception_handler(RefusedError)
    async def _refused(_request, exc: RefusedError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(InputError)
    async def _bad_input(_request, exc: InputError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _malformed(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            {"error": f"malformed request: {where} {first.get('msg', '')}".strip()}, status_code=422
        )

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        path = request.url.path
        if settings.api_key is not None and path not in ("/health",):
            given = request.headers.get("x-api-key") or request.query_params.get("key")
            if not (given and secrets.compare_digest(given, settings.api_key)):
                return JSONResponse(
                    {"error": "missing or wrong API key (header X-API-Key, or ?key= for the page)"},
                    status_code=401,
                )
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > 2 * settings.max_upload_bytes + 65536:
            return JSONResponse({"error": _too_large(settings)}, status_code=413)
        return await call_next(request)

    async def read_upload(upload: UploadFile, what: str) -> bytes:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise RefusedError(413, _too_large(settings, what))
        if not data:
            raise RefusedError(400, f"the {what} file is empty")
        return data

    def portrait_file(portrait_id: str) -> Path:
        if not _ID.match(portrait_id or ""):
            raise RefusedError(404, f"unknown portrait id {portrait_id!r}")
        found = [p for p in portraits.glob(f"{portrait_id}.*")]
        if not found:
            raise RefusedError(404, f"unknown portrait id {portrait_id!r}")
        return found[0]

    def store_portrait(data: bytes, name: str, options: GenerateOptions) -> str:
        portrait_id = uuid.uuid4().hex
        path = portraits / f"{portrait_id}{safe_suffix(name, IMAGE_SUFFIXES, '.img')}"
        path.write_bytes(data)
        try:
            pipe.prepare_portrait(str(path), options)  # decodable, with a face
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return portrait_id

    @app.get("/health")
    async def health():
        """Liveness and load: never needs the API key."""
        return {
            "status": "ok",
            "jobs": jobs.counts(),
            "streams": live["streams"],
            "model_size": pipe.image_size,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in {p.name for p in STATIC.iterdir()}:
            raise RefusedError(404, "not found")
        return FileResponse(STATIC / name)

    @app.post("/portraits", status_code=201)
    async def upload_portrait(
        portrait: Annotated[UploadFile, File()], options: Annotated[str | None, Form()] = None
    ):
        """Keep a portrait (checked: decodable, one face found) for streams; its id."""
        opts = parse_options(options).validate(pipe.motion_directions)
        data = await read_upload(portrait, "portrait")
        portrait_id = await asyncio.to_thread(store_portrait, data, portrait.filename or "", opts)
        return {"id": portrait_id}

    @app.post("/jobs", status_code=202)
    async def submit(
        speech: Annotated[UploadFile, File()],
        portrait: Annotated[UploadFile | None, File()] = None,
        portrait_id: Annotated[str | None, Form()] = None,
        options: Annotated[str | None, Form()] = None,
    ):
        """A whole-file generation: checked now, run in order; poll GET /jobs/{id}."""
        opts = parse_options(options)
        if (portrait is None) == (portrait_id is None):
            raise RefusedError(400, "give exactly one of the form fields portrait (a file) or portrait_id")
        if portrait is not None:
            image, image_name = await read_upload(portrait, "portrait"), portrait.filename or ""
        else:
            path = portrait_file(portrait_id)
            image, image_name = path.read_bytes(), path.name
        sound = await read_upload(speech, "speech")
        try:
            job = await asyncio.to_thread(jobs.submit, image, image_name, sound, speech.filename or "", opts)
        except QueueFullError as exc:
            raise RefusedError(429, str(exc)) from None
        return job.describe()

    def find(job_id: str):
        job = jobs.get(job_id) if _ID.match(job_id) else None
        if job is None:
            raise RefusedError(404, f"unknown job {job_id!r}")
        return job

    @app.get("/jobs/{job_id}")
    async def status(job_id: str):
        return find(job_id).describe()

    @app.get("/jobs/{job_id}/video")
    async def video(job_id: str):
        job = find(job_id)
        if job.state != "done" or not job.video.is_file():
            raise RefusedError(409, f"job {job_id} is {job.state}, not done")
        return FileResponse(job.video, media_type="video/mp4", filename=f"floatalk-{job_id[:8]}.mp4")

    @app.delete("/jobs/{job_id}")
    async def cancel(job_id: str):
        find(job_id)
        return jobs.cancel(job_id).describe()

    @app.websocket("/stream")
    async def stream(ws: WebSocket):
        await ws.accept()
        if settings.api_key is not None:
            given = ws.query_params.get("key") or ws.headers.get("x-api-key")
            if not (given and secrets.compare_digest(given, settings.api_key)):
                await _ws_error(ws, "missing or wrong API key (?key=)", WS_POLICY)
                return
        start = await ws.receive()  # the client's start message; a full server answers it with a refusal
        if start.get("type") == "websocket.disconnect":
            return
        with live_lock:
            busy = live["streams"] >= settings.max_streams
            if not busy:
                live["streams"] += 1
        if busy:
            await _ws_error(
                ws, f"the server already holds {settings.max_streams} streams; try again later", WS_BUSY
            )
            return
        try:
            await _serve_stream(ws, start, pipe, settings, portrait_file, store_portrait)
        except WebSocketDisconnect:
            pass  # the client left: its stream is dropped with this call's frame
        finally:
            with live_lock:
                live["streams"] -= 1

    return app


def _too_large(settings: ServerSettings, what: str = "upload") -> str:
    return f"the {what} is larger than this server's limit of {settings.max_upload_bytes / 2**20:g} MiB"


async def _ws_error(ws, message: str, code: int = WS_POLICY) -> None:
    try:
        await ws.send_json({"type": "error", "error": message})
        await ws.close(code=code)
    except Exception:
        pass


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


async def _serve_stream(
    ws, start: dict, pipe, settings: ServerSettings, portrait_file, store_portrait
) -> None:
    """One WebSocket stream (docs/serving.md: start, PCM chunks, end; frames out)."""
    from ..streaming import StreamSettings

    try:
        message = json.loads(start.get("text") or "")
        if not isinstance(message, dict) or message.get("type") != "start":
            raise ValueError
    except ValueError:
        await _ws_error(
            ws, 'the first message must be JSON {"type": "start", "portrait_id": ..., "options": {...}}'
        )
        return
    try:
        options = parse_options(message.get("options"))
        quality = int(message.get("quality", 85))
        if not 10 <= quality <= 95:
            raise InputError(f"quality must be 10..95, got {quality}")
        if message.get("format", "jpeg") != "jpeg":
            raise InputError(f"format must be jpeg, got {message.get('format')!r}")
        raw = message.get("settings") or {}
        if not isinstance(raw, dict) or set(raw) - {
            "hop_frames",
            "lookahead_frames",
            "first_hop_frames",
            "nfe",
        }:
            raise InputError("settings may only hold hop_frames, lookahead_frames, first_hop_frames and nfe")
        stream_settings = StreamSettings(**raw)
        if "portrait_id" in message:
            image = str(portrait_file(str(message["portrait_id"])))
        elif "portrait" in message:
            try:
                data = base64.b64decode(str(message["portrait"]), validate=True)
            except ValueError:
                raise InputError("portrait must be base64 image bytes") from None
            if len(data) > settings.max_upload_bytes:
                raise InputError(_too_large(settings, "portrait"))
            image = str(portrait_file(await asyncio.to_thread(store_portrait, data, "", options)))
        else:
            raise InputError("the start message needs portrait_id (POST /portraits) or portrait (base64)")
        live = await asyncio.to_thread(pipe.stream, image, options, stream_settings)
    except Exception as exc:  # InputError and the RefusedError of portrait_file
        await _ws_error(ws, str(getattr(exc, "message", exc)))
        return
    await ws.send_json(
        {
            "type": "started",
            "fps": pipe.fps,
            "sample_rate": pipe.sample_rate,
            "size": live.size,
            "seed": live.seed,
            "hop_frames": stream_settings.hop_frames,
            "lookahead_frames": stream_settings.lookahead_frames,
            "nfe": live.nfe,
            "notices": live.notices,
        }
    )
    limit = settings.max_audio_seconds * pipe.sample_rate
    sent = 0
    started = time.perf_counter()

    async def send(batches) -> None:
        nonlocal sent
        for batch in batches:
            for k, frame in enumerate(batch.frames):
                header = np.array([batch.start + k], dtype="<u4").tobytes()
                await ws.send_bytes(header + await asyncio.to_thread(_jpeg, frame, quality))
                sent += 1

    while True:
        incoming = await ws.receive()
        if incoming.get("type") == "websocket.disconnect":
            raise WebSocketDisconnect()
        if incoming.get("bytes") is not None:
            chunk = incoming["bytes"]
            if len(chunk) % 2:
                await _ws_error(ws, "audio chunks must be 16-bit little-endian PCM (an even number of bytes)")
                return
            if live.received + len(chunk) // 2 > limit:
                await _ws_error(
                    ws, f"the stream passed this server's limit of {settings.max_audio_seconds:g} s"
                )
                return
            samples = np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
            await send(await asyncio.to_thread(live.push, samples))
            continue
        try:
            control = json.loads(incoming.get("text") or "")
        except ValueError:
            control = None
        if not isinstance(control, dict) or control.get("type") != "end":
            await _ws_error(ws, 'text messages after the start must be {"type": "end"}')
            return
        try:
            await send(await asyncio.to_thread(live.end))
        except InputError as exc:
            await _ws_error(ws, str(exc))
            return
        await ws.send_json(
            {"type": "done", "frames": sent, "seconds": round(time.perf_counter() - started, 3)}
        )
        await ws.close(code=1000)
        return
