"""The HTTP API: `create_app(service, config)` builds it over a `JobService`; routes are thin
(read the request, call the service, shape the answer), as the commands are.

Errors come back as `{"error": "<one sentence>"}`: 400 a body that is not JSON, 401 no or a
wrong token, 403 a cross-site change, 404 an unknown job, 409 no audio yet, 413 a body over
its limit, 421 a foreign Host, 422 a job or upload the command line would refuse, 429 a full
queue (with Retry-After), 503 a server that is stopping.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.responses import StreamingResponse as _Streaming
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from fluxmusic_cli import __version__
from fluxmusic_cli.errors import FluxMusicError, UsageError
from fluxmusic_cli.formats import FORMATS
from fluxmusic_cli.server import events, uploads
from fluxmusic_cli.server.config import ServerConfig
from fluxmusic_cli.server.jobs import request_schema
from fluxmusic_cli.server.page import add_page
from fluxmusic_cli.server.security import COOKIE, Guard, Sessions
from fluxmusic_cli.server.service import JobService, NoAudio, QueueFull, Stopping, UnknownJob

API_VERSION = 1

_STATUS: list[tuple[type[FluxMusicError], int]] = [
    (UnknownJob, 404),
    (NoAudio, 409),
    (QueueFull, 429),
    (Stopping, 503),
    (uploads.TooLarge, 413),
    (UsageError, 422),
]


class BadJson(FluxMusicError):
    """A body that is not JSON (400)."""


def create_app(
    service: JobService, config: ServerConfig, sessions: Sessions | None = None
) -> FastAPI:
    """The API over `service`, behind the Host, cross-site and token checks (every route added
    to the returned app later, a page's included, is behind them too)."""
    sessions = sessions or Sessions()
    app = FastAPI(
        title="fluxmusic",
        version=__version__,
        summary="Text to music with FluxMusic: a job queue over models kept warm.",
        openapi_url="/v1/openapi.json",
        docs_url=None,  # no documentation page: it would load scripts from a CDN
        redoc_url=None,
    )
    _errors(app)
    _routes(app, service, config, sessions)
    _page_routes(app, service)
    _document(app)
    app.add_middleware(Guard, config=config, sessions=sessions)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(FluxMusicError)
    async def sentence(request: Request, exc: FluxMusicError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFull) else None
        return JSONResponse({"error": exc.message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = {404: "No such route.", 405: "That method is not allowed here."}.get(
            exc.status_code, str(exc.detail)
        )
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "The request's parameters are not valid."}, status_code=422)


async def _json_body(request: Request, limit: int) -> Any:
    uploads.check_length(request.headers.get("content-length"), limit, "A JSON body")
    raw = await uploads.read_limited(request.stream(), limit, "A JSON body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadJson("The body is not JSON; send a JSON object.") from None


def _routes(app: FastAPI, service: JobService, config: ServerConfig, sessions: Sessions) -> None:
    job_id_doc = {404: {"description": "Unknown job"}}

    @app.get("/v1/health", summary="Whether the server is up (needs no token)")
    def health() -> dict[str, Any]:
        return {"status": "ok", "api": API_VERSION, "version": __version__}

    @app.get(
        "/v1/engine",
        summary="The engine options the server runs with",
        description=(
            "The engine options `fluxmusic serve` was started with, fixed for its lifetime, "
            "by EngineOptions field (`encoders`, `guidance_interval` and `cache` are the "
            "defaults of the jobs that leave them out); the device and dtype they resolved "
            "to; the model sources as records name them; whether the models are loaded now. "
            "A client compares its own engine options with these."
        ),
    )
    def engine() -> dict[str, Any]:
        return {**service.engine_info, "loaded": service.loaded}

    @app.post(
        "/v1/jobs",
        status_code=202,
        summary="Queue a job: one clip of generate, remix, repaint, extend or loop",
        description=(
            "Fields: the command's long options with dashes as underscores, the same defaults "
            "and checks as the command line; `prompt`; `format` (wav by default); an edit's "
            '`input` ("upload:ID" or "job:ID"). Engine options are fixed at start (422).'
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_schema()}},
            }
        },
        responses={
            400: {"description": "Not JSON"},
            413: {"description": "Over 1 MiB"},
            422: {"description": "Refused, with the command line's sentence"},
            429: {"description": "Queue full (Retry-After)"},
        },
    )
    async def submit(request: Request) -> JSONResponse:
        body = await _json_body(request, config.json_limit)
        view = await run_in_threadpool(service.submit, body)
        return JSONResponse(
            {"id": view["id"], "status": view["status"], "position": view.get("position", 0)},
            status_code=202,
        )

    @app.get("/v1/jobs", summary="Every job, newest first")
    def list_jobs() -> dict[str, Any]:
        return {"jobs": service.jobs()}

    @app.get(
        "/v1/jobs/{job_id}",
        summary="One job: status, progress, error, record",
        responses=job_id_doc,
    )
    def get_job(job_id: str) -> dict[str, Any]:
        return service.job(job_id)

    @app.get(
        "/v1/jobs/{job_id}/events",
        summary="The job's changes as server-sent events, ending with its final status",
        description="`Last-Event-ID` resumes after that version.",
        responses={**job_id_doc, 200: {"content": {"text/event-stream": {}}}},
    )
    def job_events(job_id: str, request: Request) -> Response:
        row = service.row(job_id)
        after = events.last_event_id(request.headers.get("last-event-id"))
        if row.final and after >= row.version:
            return Response(status_code=204)  # seen it all: an EventSource stops reconnecting
        return _Streaming(
            events.job_events(service, job_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/v1/jobs/{job_id}/audio",
        summary="The clip, in the job's format (Range requests supported)",
        responses={**job_id_doc, 409: {"description": "No audio (yet)"}},
    )
    def audio(job_id: str) -> FileResponse:
        path, fmt = service.audio(job_id)
        return FileResponse(
            path,
            media_type=FORMATS[fmt].mime,
            filename=f"{job_id}.{fmt}",
            content_disposition_type="inline",
        )

    @app.get(
        "/v1/jobs/{job_id}/latent",
        summary="The clip's exact final latent (jobs made with save_latent)",
        responses={**job_id_doc, 409: {"description": "No latent"}},
    )
    def latent(job_id: str) -> FileResponse:
        path = service.latent(job_id)
        return FileResponse(
            path, media_type="application/octet-stream", filename=f"{job_id}.latent.safetensors"
        )

    @app.delete(
        "/v1/jobs/{job_id}",
        summary="Drop a queued job, stop a running one at its next step, delete a finished one",
        responses={
            **job_id_doc,
            200: {"description": "Queued job dropped: its view, status cancelled"},
            202: {"description": "Running job stopping: its view (progress at the cancel)"},
            204: {"description": "Finished job deleted with its files"},
        },
    )
    def delete(job_id: str) -> Response:
        done = service.delete(job_id)
        if done.outcome == "deleted":
            return Response(status_code=204)
        return JSONResponse(done.view, status_code=202 if done.outcome == "cancelling" else 200)

    @app.put(
        "/v1/uploads",
        status_code=201,
        summary="Upload a recording for edits (the raw body); its id",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/octet-stream": {}}}
        },
        responses={413: {"description": "Over --max-upload-mb"}, 422: {"description": "Not audio"}},
    )
    async def upload(request: Request) -> JSONResponse:
        limit = config.max_upload_bytes
        uploads.check_length(request.headers.get("content-length"), limit, "An upload")
        tmp = await uploads.receive_upload(request.stream(), config.uploads_dir, limit)
        upload_id = await run_in_threadpool(service.add_upload, tmp)
        return JSONResponse({"id": upload_id}, status_code=201)

    @app.post(
        "/v1/login-links",
        status_code=201,
        summary="A new one-time login link for a browser",
    )
    def login_link(request: Request) -> JSONResponse:
        base = f"http://{request.headers.get('host', '')}"
        return JSONResponse({"url": f"{base}/login?code={sessions.new_code()}"}, status_code=201)

    @app.get("/login", include_in_schema=False)
    def login(code: str = "") -> Response:
        session = sessions.redeem(code)
        if session is None:
            return JSONResponse(
                {
                    "error": "This login link was used already or is not valid; ask the server "
                    "for a new one (POST /v1/login-links with the token)."
                },
                status_code=401,
            )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
        return response


def _page_routes(app: FastAPI, service: JobService) -> None:
    """What the page at `/` needs beyond the job routes: every job's changes in one stream,
    and each clip's spectrogram and waveform peaks; then the page's own files."""
    journal = events.Journal(service)
    job_id_doc = {404: {"description": "Unknown job"}}
    pictures_doc = {**job_id_doc, 409: {"description": "No audio (yet)"}}

    @app.get(
        "/v1/events",
        summary="Every job's changes as server-sent events",
        description=(
            '`event: jobs` first, `{"jobs": [...]}` as `GET /v1/jobs` gives it; then '
            "`event: job` with a job's view (a new job, or its status or progress changed; the "
            'latest state) and `event: deleted` with `{"id"}`. `Last-Event-ID` resumes '
            "after that event (a list again when it is from an earlier run or too old). The "
            "stream ends only when the server stops."
        ),
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    def all_events(request: Request) -> Response:
        after = journal.parse(request.headers.get("last-event-id"))
        return _Streaming(
            events.all_events(service, journal, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/v1/jobs/{job_id}/spectrogram.png",
        summary="The clip's mel spectrogram (PNG, 720 x 160, 0 to 8 kHz)",
        description="Drawn from the clip the first time it is asked for, then kept with it.",
        responses={**pictures_doc, 200: {"content": {"image/png": {}}}},
    )
    def spectrogram(job_id: str) -> FileResponse:
        return FileResponse(service.spectrogram(job_id), media_type="image/png")

    @app.get(
        "/v1/jobs/{job_id}/peaks",
        summary="The clip's waveform: its duration and (min, max) peaks of the mono mix",
        description=(
            '`{"duration": SECONDS, "sample_rate": HZ, "peaks": [[MIN, MAX], ...]}`, up to '
            "1000 pairs spread evenly over the clip, in its seconds as the editing commands "
            "read it (a repaint region chosen on them is the region changed)."
        ),
        responses={**pictures_doc, 200: {"content": {"application/json": {}}}},
    )
    def peaks(job_id: str) -> FileResponse:
        return FileResponse(service.peaks(job_id), media_type="application/json")

    add_page(app)


def _document(app: FastAPI) -> None:
    """The OpenAPI document says how to authenticate: a bearer token everywhere but health."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "token": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"token": []}]
            schema["paths"]["/v1/health"]["get"]["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
