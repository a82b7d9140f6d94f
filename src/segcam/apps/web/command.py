"""``segcam serve``: its flags, and starting the server (FastAPI is imported only here)."""

from __future__ import annotations

import argparse

from ...errors import SegcamError
from .config import MB, ModelSpec, WebConfig

WEB_PACKAGES = ("fastapi", "uvicorn", "starlette", "multipart", "python_multipart", "pydantic", "nibabel")


def _model(text: str) -> ModelSpec:
    name, eq, spec = text.partition("=")
    if eq and name and spec and ":" not in name and "/" not in name:
        return ModelSpec(spec=spec, name=name)
    return ModelSpec(spec=text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the interactive web tool (pip install 'segcam[web]')")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--model", action="append", type=_model, metavar="[NAME=]SPEC",
                   help="a model to serve, as for `segcam explain --model` (repeat for several; default: default)")
    p.add_argument("--weights", action="append", help="weights for the --model of the same position")
    p.add_argument("--num-classes", type=int, help="number of classes of zoo/torchvision/factory models (applies to "
                   "every --model that takes it; the default model has 6)")
    p.add_argument("--max-upload-mb", type=int, default=25, help="largest upload accepted (default 25 MB)")
    p.add_argument("--max-pixels", type=int, help="largest image or volume accepted, in pixels (default 2**24)")
    p.add_argument("--max-model-pixels", type=int, help="largest input a model is asked to explain, in pixels "
                   "after its preprocessing (default 2**20)")
    p.add_argument("--cache-mb", type=int, default=1024, help="memory for what the server keeps for its users: pictures (at most half), forward passes, results, "
                   "hover tables (default 1024 MB)")
    p.add_argument("--allow-model-upload", action="store_true",
                   help="let users upload .safetensors weights of a known architecture (never pickles)")
    p.set_defaults(run=cmd_serve)


def config_from(args: argparse.Namespace) -> WebConfig:
    models = args.model or [ModelSpec()]
    weights = args.weights or []
    if len(weights) > len(models):
        raise SegcamError(f"{len(weights)} --weights for {len(models)} --model; give one --weights after each "
                          "--model that needs it.")
    specs = tuple(ModelSpec(m.spec, weights[i] if i < len(weights) else None, args.num_classes, m.name)
                  for i, m in enumerate(models))
    extra = {k: v for k, v in (("max_pixels", args.max_pixels), ("max_model_pixels", args.max_model_pixels)) if v}
    try:
        return WebConfig(models=specs, max_upload_bytes=args.max_upload_mb * MB, cache_bytes=args.cache_mb * MB,
                         allow_model_upload=args.allow_model_upload, **extra)
    except SegcamError as e:  # name the flag, not the field
        flags = {"max_upload_bytes": "--max-upload-mb", "cache_bytes": "--cache-mb", "max_pixels": "--max-pixels",
                 "max_model_pixels": "--max-model-pixels"}
        text = str(e)
        for field, flag in flags.items():
            text = text.replace(f"WebConfig.{field}", flag)
        raise SegcamError(text) from None


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .server import ServerThread, create_app
    except ImportError as e:
        if e.name not in WEB_PACKAGES:
            raise
        raise SegcamError(f"segcam serve needs the web extra ({e.name} is missing): pip install 'segcam[web]'.") \
            from None
    if not 0 <= args.port <= 65535:
        raise SegcamError(f"--port must be 0..65535, got {args.port}.")
    app = create_app(config_from(args))
    with ServerThread(app, args.host, args.port) as server:
        print(f"segcam serve: open {server.url} (Ctrl+C stops the server)", flush=True)
        try:
            while server.thread.is_alive():
                server.thread.join(0.5)
        except KeyboardInterrupt:
            print("segcam serve: stopped", flush=True)
    return 0
