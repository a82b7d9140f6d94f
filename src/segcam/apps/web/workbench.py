"""The web tool's engine, without HTTP: models, sessions, prediction, explanation, masking test.

Each served model has one :class:`~segcam.Explainer`.  The forward pass of a picture is run once
per (session, image, model, slice, layer) and kept in the session store's bounded cache with its
autograd graph, so a new click costs one backward pass.  Calls into one model never interleave:
forward passes hold the model's lock (the engine's own guard), and backward passes over a kept
graph take the same lock.  Long methods run unlocked between their guarded batches, so clicks
from other users are served while a RISE job runs.
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ... import LinearMaps, Target, __version__, load_model
from ...core import INPUT, Forward, model_lock
from ...data import SAMPLES, load_image
from ...errors import ImageError, SegcamError, closest
from ...methods import METHODS, create
from . import pictures
from .config import ModelSpec, WebConfig
from .hover import HoverTables
from .jobs import Job, JobRunner
from .models import Served
from .regions import Slice, flat_region, volume_region
from .reproduce import commands
from .sessions import NotFound, Picture, SavedBytes, SessionStore, forward_bytes
from .uploads import model_upload

Progress = Callable[[int, int], None]
MAX_ACTIVE_JOBS = 4  # queued or running, per session
MAX_KEPT_JOBS = 16  # per session, oldest dropped


@dataclass(frozen=True)
class Prepared:
    """What one model sees of one picture: ``x (C, *S)`` preprocessed; ``shown (C, h, w)`` the
    picture drawn on the page (unnormalised, at the model's size); ``where`` the slice shown
    when the model explains a whole volume."""

    x: Tensor
    shown: Tensor
    view: tuple[int, int] | None
    where: Slice | None


@dataclass
class Result:
    """An explanation kept for the masking test and downloads."""

    model: str
    x: Tensor
    map: Tensor  # (*S) in [0, 1]
    region: Tensor  # (*S) bool
    cls: int
    where: Slice | None
    shown: Tensor
    title: str
    command: str
    python: str


def checked_method(name: str, options: dict[str, Any], limits: Mapping[str, int]) -> Any:
    """The method, its options checked by the method and against the server's work ``limits``."""
    method = create(name, options)
    for option, limit in limits.items():
        value = getattr(method, option, None)
        if isinstance(value, int) and value > limit:
            raise SegcamError(f"{option}={value} asks for more work than this server allows (at most {limit}); "
                              f"lower {option} or run `segcam explain` on your own machine.")
    return method


def method_info(name: str) -> dict[str, Any]:
    cls = METHODS[name]
    options = [{"name": s.name, "default": s.default if not isinstance(s.default, tuple) else list(s.default),
                "help": s.help, "schema": s.kind.schema()} for s in cls.options()]
    return {"name": name, "summary": cls.summary(), "on_input": cls.on_input, "gradients": cls.gradients,
            "long": not cls.gradients, "options": options}


class Workbench:
    """Everything the server does, callable from many threads."""

    def __init__(self, config: WebConfig, models: dict[str, Served]):
        self.config = config
        self.models = models
        self.store = SessionStore(config.max_sessions, config.max_images, config.max_results, config.cache_bytes)
        self.samples = {p.stem: p for p in sorted(SAMPLES.glob("scene-*.png"))}  # the PNGs: commands repeat them
        self._defaults: dict[tuple[str, tuple[int, ...]], str] = {}
        self.runner = JobRunner(config.max_jobs)
        self.hover = HoverTables(self.store.cache, config.hover_bytes)
        self._jobs_lock = threading.Lock()
        self._models_lock = threading.Lock()

    # ------------------------------------------------------------------ discovery
    def info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "models": [m.info() for m in self.models.values()],
            "methods": [method_info(name) for name in sorted(METHODS)],
            "default_method": "seg-grad-cam",
            "samples": [{"id": k, "name": k.replace("-", " ")} for k in self.samples],
            "limits": {"max_upload_bytes": self.config.max_upload_bytes, "max_pixels": self.config.max_pixels},
            "allow_model_upload": self.config.allow_model_upload,
        }

    def served(self, name: str) -> Served:
        if name not in self.models:
            near = closest(name, self.models)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise SegcamError(f"unknown model {name!r}.{hint} Served: {', '.join(self.models)}.")
        return self.models[name]

    def add_model(self, filename: str, data: bytes, family: str | None, num_classes: int | None,
                  name: str | None) -> dict[str, Any]:
        """Serve a model from uploaded safetensors weights (a segcam file naming its architecture,
        or weights of zoo ``family``); never a pickle."""
        with self._models_lock:
            if len(self.models) - len(self.config.models) >= self.config.extra_models:
                raise TooMany(f"the server already holds {self.config.extra_models} uploaded models; restart it "
                              "or serve the model with --model.")
        with model_upload(filename, data, self.config.max_upload_bytes) as path:
            spec = f"zoo:{family}" if family else str(path)
            loaded = load_model(spec, weights=path if family else None, num_classes=num_classes)
        label = name or f"upload-{len(self.models) - len(self.config.models) + 1}"
        with self._models_lock:
            if label in self.models:
                raise SegcamError(f"a model named {label!r} is already served; upload it under another name.")
            self.models[label] = Served.of(label, ModelSpec(spec=family and f"zoo:{family}" or filename,
                                                            weights=filename if family else None,
                                                            num_classes=num_classes, name=label), loaded)
        return self.models[label].info()

    # ------------------------------------------------------------------ images
    def add_picture(self, session: str, name: str, raw: Tensor) -> dict[str, Any]:
        if raw.ndim not in (3, 4) or not bool(torch.isfinite(raw).all()):
            raise ImageError(f"{name}: an image must be (C, H, W) or a volume (C, D, H, W) of finite numbers, "
                             f"got shape {tuple(raw.shape)}; check the file.")
        picture = Picture(name, raw.float())
        return picture.info(self.store.add_image(session, picture))

    def add_sample(self, session: str, sample: str) -> dict[str, Any]:
        if sample not in self.samples:
            raise SegcamError(f"unknown sample {sample!r}; samples: {', '.join(self.samples)}.")
        return self.add_picture(session, self.samples[sample].name, load_image(self.samples[sample]))

    def prepare(self, picture: Picture, served: Served, view: dict[str, int] | None) -> Prepared:
        """The model input and the picture shown, for ``view`` (a slice of a volume)."""
        raw = picture.raw
        if picture.dims == 2:
            if served.dims == 3:
                raise ImageError(f"model {served.name!r} is 3-D and takes volumes; upload a volume (.npy "
                                 "(C, D, H, W) or NIfTI) or choose a 2-D model.")
            return Prepared(served.preprocess(raw), served.display(raw), None, None)
        where = _slice(view, tuple(raw.shape[1:]) if served.dims == 2 else served.display_shape(raw))
        if served.dims == 2:  # a 2-D model explains the slice shown
            flat = raw.select(1 + where.axis, where.index)
            return Prepared(served.preprocess(flat), served.display(flat), (where.axis, where.index), None)
        shown = where.take(served.display(raw))
        return Prepared(served.preprocess(raw), shown, (where.axis, where.index), where)

    def view_png(self, session: str, image: str, model: str, view: dict[str, int] | None) -> bytes:
        prepared = self.prepare(self.store.image(session, image), self.served(model), view)
        return pictures.png(pictures.display(prepared.shown))

    # ------------------------------------------------------------------ forward passes
    def layer_for(self, served: Served, x: Tensor, layer: str | None, method: Any) -> str:
        if method.on_input:
            if layer not in (None, "", INPUT):
                raise SegcamError(f"method {method.name!r} explains the input's pixels and takes no layer; "
                                  "leave the layer empty.")
            return INPUT
        if layer:
            return served.explainer.resolve_layer(layer)
        key = (served.name, tuple(x.shape))
        if key not in self._defaults:
            self._defaults[key] = served.explainer.default_layer(x)
        return self._defaults[key]

    def forward(self, session: str, image: str, served: Served, prepared: Prepared, layer: str) -> Forward:
        """The kept forward pass recording ``layer`` (run now if not kept)."""
        key = (session, image, served.name, prepared.view, layer)
        fwd = self.store.cache.get(key)
        if fwd is not None:
            return fwd
        with model_lock(served.model):
            fwd = self.store.cache.get(key)
            if fwd is None:
                with SavedBytes() as saved:
                    fwd = served.explainer.forward(prepared.x, layer=layer)
                size = forward_bytes([*saved.tensors, fwd.image, fwd.logits.values, *fwd.activations.values()])
                self.store.cache.put(key, fwd, size)
        return fwd

    def predict(self, session: str, image: str, model: str, view: dict[str, int] | None) -> dict[str, Any]:
        served = self.served(model)
        prepared = self.prepare(self.store.image(session, image), served, view)
        fwd = self.forward(session, image, served, prepared, self.layer_for(served, prepared.x, None, METHODS[
            "seg-grad-cam"]))
        labels = fwd.predicted[0]
        labels = prepared.where.take(labels) if prepared.where else labels
        counts = torch.bincount(labels.flatten(), minlength=fwd.logits.n_classes).tolist()
        names = served.class_names(fwd.logits.n_classes)
        colors = pictures.class_colors(len(names))
        return {"labels_png": pictures.data_url(pictures.labels_png(labels, colors)), "shape": list(labels.shape),
                "labels": pictures.encode_labels(labels),
                "classes": [{"index": i, "name": n, "pixels": c, "color": colors[i]}
                            for i, (n, c) in enumerate(zip(names, counts))]}

    def layers(self, session: str, image: str, model: str, view: dict[str, int] | None) -> dict[str, Any]:
        served = self.served(model)
        prepared = self.prepare(self.store.image(session, image), served, view)
        readable: dict[str, str] = {}
        for name, module in served.explainer.layer_names.items():
            readable[module] = f"{readable[module]} = {name}" if module in readable else name
        infos = [i for i in served.explainer.layers(prepared.x) if i.explainable]
        return {"default": self.layer_for(served, prepared.x, None, METHODS["seg-grad-cam"]),
                "layers": [{"name": i.name, "readable": readable.get(i.name), "type": i.type,
                            "shape": list(i.shape or ()), "grid": list(i.layout.grid), "kind": i.layout.kind}
                           for i in infos]}

    # ------------------------------------------------------------------ explaining
    def explain(self, session: str, request: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
        """One explanation of ``request`` (see the API): the map shown, its score and how to reproduce it.
        A ``hover`` request of a linear method is answered from a precomputed table once one is built."""
        start = time.perf_counter()
        served = self.served(request["model"])
        picture = self.store.image(session, request["image"])
        prepared = self.prepare(picture, served, request.get("view"))
        method = checked_method(request["method"], request.get("options") or {}, self.config.work_limits)
        layer = self.layer_for(served, prepared.x, request.get("layer"), method)
        fwd = self.forward(session, request["image"], served, prepared, layer)
        spec = request["region"]
        region = volume_region(spec, prepared.where, tuple(prepared.x.shape[1:])) if prepared.where \
            else flat_region(spec, tuple(prepared.x.shape[1:]))
        target = Target(request["cls"], region)
        table = None
        if request.get("hover") and not method.on_input:
            key = self.hover.key((session, request["image"], served.name, prepared.view, layer), method)
            table = self.hover.get(key, method, lambda: LinearMaps.build(
                served.explainer, fwd, layer=layer, method=method, max_bytes=self.hover.max_bytes))
        if table is not None:
            exp = table.explain(target)
        elif method.gradients:
            with model_lock(served.model):
                exp = served.explainer.explain(fwd, target, method=method, layer=layer, progress=progress)
        else:  # forward passes only: guarded batch by batch, other requests go in between
            exp = served.explainer.explain(fwd, target, method=method, layer=layer, progress=progress)
        return self._result(session, served, picture, prepared, request, exp, table is not None, start)

    def _result(self, session: str, served: Served, picture: Picture, prepared: Prepared, request: dict[str, Any],
                exp: Any, fast: bool, start: float) -> dict[str, Any]:
        full, mask = exp.map[0], exp.region[0]
        shown = prepared.where.take(full) if prepared.where else full
        command, python = commands(served, picture, request, exp, prepared.view)
        title = f"{exp.method} · {exp.layer} · {exp.target.describe(served.explainer.class_names)}"
        kept = Result(served.name, prepared.x, full, mask, exp.cls, prepared.where, prepared.shown, title, command,
                      python)
        rid = self.store.add_result(session, kept, forward_bytes([prepared.x, full, mask, prepared.shown]))
        return {"result": rid, "shape": list(shown.shape), "heatmap": pictures.encode_bytes(shown),
                "max": float(exp.raw.clamp(min=0).max()), "score": float(exp.score[0]),
                "region_pixels": int(mask.sum()), "cls": exp.cls, "class_name": exp.class_name,
                "layer": exp.layer, "method": exp.method, "options": exp.options,
                "ms": round(1000 * (time.perf_counter() - start), 2), "fast": fast,
                "command": command, "python": python}

    # ------------------------------------------------------------------ jobs
    def start_job(self, session: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run ``explain(request)`` in the background (for long methods); see :mod:`.jobs`."""
        # bad options fail now, not in the job
        checked_method(request["method"], request.get("options") or {}, self.config.work_limits)
        jobs = self.store.get(session).jobs
        with self._jobs_lock:
            active = [j for j in jobs.values() if j.state in ("queued", "running")]
            if len(active) >= MAX_ACTIVE_JOBS:
                raise TooMany(f"this session already runs {len(active)} jobs; wait for one or cancel it.")
            job = Job(lambda progress: self.explain(session, request, progress))
            jobs[job.id] = job
            while len(jobs) > MAX_KEPT_JOBS:
                jobs.popitem(last=False)
        self.runner.submit(job)
        return {"job": job.id}

    def job(self, session: str, job: str) -> Job:
        found = self.store.get(session).jobs.get(job)
        if found is None:
            raise NotFound(f"unknown job {job!r} in this session; start it again.")
        return found

    def cancel_all(self) -> None:
        """Cancel every queued or running job (when the server stops)."""
        for session in self.store.sessions():
            for job in list(session.jobs.values()):
                job.cancel()

    def download(self, session: str, result: str, kind: str) -> tuple[bytes, str]:
        return Downloads.make(self.store.result(session, result), kind)

    def masking(self, session: str, result: str, threshold: float, baseline: str) -> dict[str, Any]:
        from ...evaluation import masking_test

        r: Result = self.store.result(session, result)
        served = self.served(r.model)
        out = masking_test(served.model, r.x, r.map, r.region, r.cls, threshold=threshold, baseline=baseline)
        masked = out.masked_image if r.where is None else r.where.take(out.masked_image)
        return {"dice": out.dice, "kept": out.kept, "threshold": threshold, "baseline": baseline,
                "masked_png": pictures.data_url(pictures.png(pictures.display(masked)))}


class TooMany(SegcamError):
    """Too many jobs at once in one session (HTTP 429)."""


class Downloads:
    """The files of a kept result, as ``(bytes, media type)``."""

    KINDS = ("heatmap.png", "heatmap.npy", "region.npy", "figure.png", "command.txt", "snippet.py")

    @staticmethod
    def make(r: Result, kind: str) -> tuple[bytes, str]:
        shown_map = r.where.take(r.map) if r.where else r.map
        if kind == "heatmap.png":
            return pictures.png(pictures.to_bytes(shown_map).cpu().numpy()), "image/png"
        if kind in ("heatmap.npy", "region.npy"):
            buffer = io.BytesIO()
            np.save(buffer, (r.map.float() if kind == "heatmap.npy" else r.region).cpu().numpy())
            return buffer.getvalue(), "application/octet-stream"
        if kind == "figure.png":
            from ...viz import save_overlay

            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "figure.png"
                region = r.where.take(r.region) if r.where else r.region
                save_overlay(path, r.shown, shown_map, region, title=r.title)
                return path.read_bytes(), "image/png"
        if kind == "command.txt":
            return (r.command + "\n").encode(), "text/plain"
        if kind == "snippet.py":
            return r.python.encode(), "text/x-python"
        raise NotFound(f"unknown download {kind!r}; choose one of {', '.join(Downloads.KINDS)}.")


def _slice(view: dict[str, int] | None, volume: tuple[int, ...]) -> Slice:
    view = view or {}
    axis = view.get("axis", 0)
    if axis not in (0, 1, 2):
        raise SegcamError(f"view axis must be 0, 1 or 2 (of the volume's D, H, W axes), got {axis!r}.")
    index = view.get("index", volume[axis] // 2)
    if not isinstance(index, int) or not 0 <= index < volume[axis]:
        raise SegcamError(f"slice index {index!r} is outside the volume's {volume[axis]} slices along axis "
                          f"{axis}; pick 0..{volume[axis] - 1}.")
    return Slice(axis, index)
