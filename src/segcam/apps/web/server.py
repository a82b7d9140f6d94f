"""The HTTP face of the :class:`~.workbench.Workbench`: routes, limits and JSON errors.

Every route is a plain function that FastAPI runs on its thread pool; all shared state lives in
the workbench, which is safe to call from many threads.  Every error is JSON,
``{"error": {"kind": ..., "message": ...}}``: 404 for unknown sessions, images, results, jobs
and samples; 413 for anything over a size limit (an upload's bytes or pixels, a model input's
pixels, a forward pass larger than the cache); 403 for model uploads that are switched off;
409 when the uploaded models are at their limit; 429 for too many jobs at once; and 422 for
anything else the user can fix (a bad file, class, layer, method, option or region).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ... import __version__
from ...errors import SegcamError, TooLargeError
from .config import WebConfig
from .jobs import TooMany
from .models import Full, Served
from .schemas import ExplainRequest, ImageRequest, MaskingRequest, View, view_dict
from .sessions import NotFound
from .uploads import decode_upload
from .workbench import Workbench

STATIC = Path(__file__).parent / "static"
Axis = Annotated[int, Query(ge=0, le=2, description="axis of the volume's slices (0, 1, 2 of D, H, W)")]
Index = Annotated[int | None, Query(ge=0, le=2**31, description="slice index (default: the middle one)")]


class Forbidden(SegcamError):
    """A switched-off feature (HTTP 403)."""


STATUS = {NotFound: 404, TooLargeError: 413, Forbidden: 403, Full: 409, TooMany: 429}


def error_response(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status)


def _status(error: SegcamError) -> int:
    return next((code for cls, code in STATUS.items() if isinstance(error, cls)), 422)


def _megabytes(limit: int) -> str:
    return f"{limit / 2**20:.3g} MB"


def _read_upload(file: UploadFile, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"the file is larger than the server's upload limit of {_megabytes(limit)}; upload a "
                            "smaller file or start the server with a larger --max-upload-mb.")
    return data


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a JSON 413, by their Content-Length or, for
    chunked bodies, as soon as the bytes received pass the limit (before they are all read)."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        message = (f"the request is larger than the server's upload limit of {_megabytes(self.limit - 2**16)}; "
                   "send a smaller file or start the server with a larger --max-upload-mb.")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await error_response(413, "TooLargeError", message)(scope, receive, send)
            return
        seen, refused = 0, False

        async def limited() -> dict:
            nonlocal seen, refused
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.limit:
                refused = True
                raise TooLargeError(message)
            return event

        async def replying(event: dict) -> None:  # once refused, the app's own reply is replaced by a 413
            if not refused:
                await send(event)
            elif event["type"] == "http.response.start":
                await error_response(413, "TooLargeError", message)(scope, receive, send)

        try:
            await self.app(scope, limited, replying)
        except TooLargeError:  # raised while a body was read outside the routes' error handlers
            await error_response(413, "TooLargeError", message)(scope, receive, send)


def create_app(config: WebConfig | None = None, models: dict[str, Served] | None = None) -> FastAPI:
    """The web tool's app for ``config`` (its models are loaded now unless ``models`` are given)."""
    config = config or WebConfig()
    if models is None:
        models = {m.name or m.spec: Served.load(m) for m in config.models}
    bench = Workbench(config, models)
    app = FastAPI(title="segcam", version=__version__, description="Explain a segmentation model, interactively.")
    app.state.workbench = bench
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes + 2**16)  # room for the form around a file

    @app.exception_handler(SegcamError)
    async def segcam_error(request: Request, error: SegcamError) -> JSONResponse:
        return error_response(_status(error), type(error).__name__, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                             for e in error.errors()[:5])
        return error_response(422, "RequestError", f"the request is not valid: {problems}.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, "HTTPError", str(error.detail))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return bench.info()

    @app.post("/api/sessions")
    def new_session() -> dict[str, str]:
        return {"session": bench.store.create().id}

    @app.post("/api/sessions/{session}/images")
    def upload(session: str, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        bench.store.get(session)
        data = _read_upload(file, config.max_upload_bytes)
        raw = decode_upload(file.filename or "upload", data, max_bytes=config.max_upload_bytes,
                            max_pixels=config.max_pixels)
        return bench.add_picture(session, file.filename or "upload", raw)

    @app.post("/api/sessions/{session}/samples/{sample}")
    def sample(session: str, sample: str) -> dict[str, Any]:
        return bench.add_sample(session, sample)

    @app.get("/api/sessions/{session}/images/{image}/view.png",
             responses={200: {"content": {"image/png": {}}}})
    def view_png(session: str, image: str, model: str = "default", axis: Axis = 0, index: Index = None) -> Response:
        view = view_dict(View(axis=axis, index=index))
        return Response(bench.view_png(session, image, model, view), media_type="image/png")

    @app.post("/api/sessions/{session}/predict")
    def predict(session: str, body: ImageRequest) -> dict[str, Any]:
        return bench.predict(session, body.image, body.model, view_dict(body.view))

    @app.get("/api/sessions/{session}/layers")
    def layers(session: str, image: str, model: str = "default", axis: Axis = 0, index: Index = None
               ) -> dict[str, Any]:
        return bench.layers(session, image, model, view_dict(View(axis=axis, index=index)))

    @app.post("/api/sessions/{session}/explain")
    def explain(session: str, body: ExplainRequest) -> dict[str, Any]:
        return bench.explain(session, _request(body))

    @app.post("/api/sessions/{session}/jobs")
    def start_job(session: str, body: ExplainRequest) -> dict[str, Any]:
        return bench.start_job(session, _request(body))

    @app.get("/api/sessions/{session}/jobs/{job}")
    def job_status(session: str, job: str) -> dict[str, Any]:
        return bench.job_status(session, job)

    @app.delete("/api/sessions/{session}/jobs/{job}")
    def cancel_job(session: str, job: str) -> dict[str, Any]:
        found = bench.job(session, job)
        found.cancel()
        return found.status()

    @app.post("/api/sessions/{session}/results/{result}/masking")
    def masking(session: str, result: str, body: MaskingRequest) -> dict[str, Any]:
        return bench.masking(session, result, body.threshold, body.baseline)

    @app.get("/api/sessions/{session}/results/{result}/{kind}",
             responses={200: {"content": {"application/octet-stream": {}}}})
    def download(session: str, result: str, kind: str) -> Response:
        data, media = bench.download(session, result, kind)
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{kind}"'})

    @app.post("/api/models")
    def upload_model(file: Annotated[UploadFile, File()], family: Annotated[str | None, Form()] = None,
                           num_classes: Annotated[int | None, Form(ge=1, le=10_000)] = None,
                           name: Annotated[str | None, Form(max_length=64)] = None) -> dict[str, Any]:
        if not config.allow_model_upload:
            raise Forbidden("model upload is switched off; start the server with --allow-model-upload "
                            "(safetensors files only) or serve the model with --model.")
        data = _read_upload(file, config.max_upload_bytes)
        return bench.add_model(file.filename or "model.safetensors", data, family, num_classes, name)

    return app


def _request(body: ExplainRequest) -> dict[str, Any]:
    out = body.model_dump()
    out["region"] = body.region.model_dump()
    out["view"] = view_dict(body.view)
    return out


class ServerThread:
    """A real uvicorn server for ``app`` on ``host`` (port 0: any free port) in a background
    thread; ``url`` once started; ``stop()`` shuts it down and closes the app's workbench (its
    jobs are cancelled; serve a new app afterwards).  For tests, notebooks and benchmarks."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="segcam-web")
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise SegcamError(f"the web server did not start on {host}:{port}; is the port free?")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0].getsockname()
        self.url = f"http://{sock[0]}:{sock[1]}"

    def stop(self) -> None:
        workbench = getattr(self.server.config.app.state, "workbench", None)
        if workbench is not None:
            workbench.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ServerThread", "create_app"]
