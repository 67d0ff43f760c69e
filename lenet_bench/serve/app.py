"""The web app: FastAPI routes over one loaded model, the page's files from static/, run by uvicorn.

GET /api/model describes the run and its layers; POST /api/read takes the drawing as an image
(the page sends its canvas as PNG) and answers with what the page shows (reading.py).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from lenet_bench.console import console
from lenet_bench.predict import DigitError, TrainedModel
from lenet_bench.serve.reading import describe_model, read_drawing

STATIC = Path(__file__).parent / "static"
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # a canvas PNG is a few kB


def create_app(trained: TrainedModel) -> FastAPI:
    app = FastAPI(title=f"lenet_bench: {trained.run_name}", docs_url=None, redoc_url=None, openapi_url=None)
    # One forward pass at a time: the framework's own thread pool already uses every core it may.
    forward = threading.Lock()
    description = describe_model(trained)

    def read_locked(body: bytes) -> dict[str, Any]:
        with forward:
            return read_drawing(trained, body)

    @app.get("/api/model")
    def model() -> dict[str, Any]:
        return description

    @app.post("/api/read")
    async def read(request: Request) -> dict[str, Any]:
        try:
            body = await request.body()
        except ClientDisconnect:  # one line, not the ASGI stack: a closed tab is no server error
            console.print("serve: a client disconnected during its upload; nothing was read", markup=False)
            raise HTTPException(400, "the upload was cut off") from None
        if len(body) > MAX_IMAGE_BYTES:
            raise HTTPException(413, f"the image is {len(body):,} bytes; at most {MAX_IMAGE_BYTES:,} are read")
        try:
            return await run_in_threadpool(read_locked, body)
        except DigitError as err:
            raise HTTPException(422, str(err)) from None

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening, or OSError (the port is taken, the address is not ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def run_server(app: FastAPI, sock: socket.socket) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn shuts down gracefully on both)."""
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
