"""The web tool's engine, without HTTP: models, sessions, prediction, explanation, masking test.

Each served model has one :class:`~segcam.Explainer`.  The forward pass of a picture is run once
per (session, image, model, layer) — and slice, for a 2-D model on a volume; a 3-D model has one
per volume — and kept in the session store's bounded cache with its autograd graph, so a new
click costs one backward pass.  Calls into one model never interleave:
forward passes hold the model's lock (the engine's own guard), and backward passes over a kept
graph take the same lock.  Long methods run unlocked between their guarded batches, so clicks
from other users are served while a RISE job runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ... import LinearMaps, Target, __version__, regions
from ...core import INPUT, Forward, model_lock
from ...data import SAMPLES, load_image
from ...errors import ImageError, ModelError, SegcamError, TooLargeError
from ...methods import METHODS
from . import pictures
from .config import WebConfig
from .forms import check_batch, checked_method, class_of, method_info
from .hover import HoverTables
from .jobs import Job, JobRunner, TooMany
from .models import Catalogue, Served
from .regions import Slice, flat_region, volume_region
from .reproduce import commands
from .results import Result
from .sessions import NotFound, Picture, SavedBytes, SessionStore, forward_bytes

Progress = Callable[[int, int], None]
MAX_CHANNELS = 4  # more channels than this are a misread layout, not a picture
MAX_ACTIVE_JOBS = 4  # queued or running, per session
MAX_SERVER_JOBS = 32  # queued or running, all sessions
MAX_KEPT_JOBS = 16  # per session, oldest dropped


@dataclass(frozen=True)
class Prepared:
    """What one model sees of one picture: ``picture`` before and ``x (C, *S)`` after its
    preprocessing; ``shown (C, h, w)`` the picture drawn on the page (unnormalised, at the
    model's size); ``view`` the slice shown of a volume, ``where`` that slice when the model
    explains the whole volume."""

    picture: Tensor
    x: Tensor
    shown: Tensor
    view: tuple[int, int] | None
    where: Slice | None

    @property
    def forward_view(self) -> tuple[int, int] | None:
        """The slice the forward pass depends on (none when the whole volume is explained)."""
        return None if self.where else self.view


class Workbench:
    """Everything the server does, callable from many threads."""

    def __init__(self, config: WebConfig, models: dict[str, Served]):
        self.config = config
        self.models = Catalogue(config, models)
        self.store = SessionStore(config.max_sessions, config.max_images, config.max_results, config.cache_bytes)
        self.samples = {p.stem: p for p in sorted(SAMPLES.glob("scene-*.png"))}  # the PNGs: commands repeat them
        self._defaults: dict[tuple[str, tuple[int, ...]], str] = {}
        self.runner = JobRunner(config.max_jobs)
        self.hover = HoverTables(self.store.cache, min(config.hover_bytes, config.cache_bytes))

    def close(self) -> None:
        """Cancel every job and stop the background threads (when the server stops)."""
        for session in self.store.sessions():
            for job in list(session.jobs.values()):
                job.cancel()
        self.runner.shutdown()
        self.hover.shutdown()

    # ------------------------------------------------------------------ discovery
    def info(self) -> dict[str, Any]:
        """The served models, the registered methods, the samples and the limits."""
        return {
            "version": __version__,
            "models": [m.info() for m in self.models.all()],
            "methods": [method_info(name, self.config.work_limits) for name in sorted(METHODS)],
            "heat_colors": pictures.heat_colors(),
            "default_method": "seg-grad-cam",
            "samples": [{"id": k, "name": k.replace("-", " ")} for k in self.samples],
            "limits": {"max_upload_bytes": self.config.max_upload_bytes, "max_pixels": self.config.max_pixels,
                       "max_model_pixels": self.config.max_model_pixels},
            "allow_model_upload": self.config.allow_model_upload,
        }

    def served(self, name: str) -> Served:
        """The served model ``name``."""
        return self.models.served(name)

    def add_model(self, filename: str, data: bytes, family: str | None, num_classes: int | None,
                  name: str | None) -> dict[str, Any]:
        """Serve an uploaded model (see :meth:`.models.Catalogue.upload`)."""
        return self.models.upload(filename, data, family, num_classes, name).info()

    # ------------------------------------------------------------------ images
    def add_picture(self, session: str, name: str, raw: Tensor, sample: bool = False) -> dict[str, Any]:
        """Keep an image ``(C, H, W)`` or volume ``(C, D, H, W)`` for ``session``."""
        if raw.ndim not in (3, 4) or not bool(torch.isfinite(raw).all()):
            raise ImageError(f"{name}: an image must be (C, H, W) or a volume (C, D, H, W) of finite numbers, "
                             f"got shape {tuple(raw.shape)}; check the file.")
        if raw.shape[0] > max(MAX_CHANNELS, *(m.loaded.preprocess.channels or 0 for m in self.models.all())):
            shape = tuple(raw.shape)
            raise ImageError(f"{name} has shape {shape}, read as {shape[0]} channels; segcam reads .npy images as "
                             "(C, H, W) and volumes as (C, D, H, W). Save an (H, W, C) picture as "
                             "np.moveaxis(a, -1, 0) and a (D, H, W) volume as a[None].")
        picture = Picture(name, raw.float(), sample)
        return picture.info(self.store.add_image(session, picture))

    def add_sample(self, session: str, sample: str) -> dict[str, Any]:
        """Keep bundled sample scene ``sample`` (its PNG) for ``session``."""
        if sample not in self.samples:
            raise NotFound(f"unknown sample {sample!r}; samples: {', '.join(self.samples)}.")
        return self.add_picture(session, self.samples[sample].name, load_image(self.samples[sample]), sample=True)

    def prepare(self, picture: Picture, served: Served, view: dict[str, int] | None) -> Prepared:
        """The model input and the picture shown, for ``view`` (a slice of a volume)."""
        raw = picture.raw
        if picture.dims == 2:
            if served.dims == 3:
                raise ImageError(f"model {served.name!r} is 3-D and takes volumes; upload a volume (.npy "
                                 "(C, D, H, W) or NIfTI) or choose a 2-D model.")
            return self._checked(Prepared(raw, served.preprocess(raw), served.display(raw), None, None))
        where = _slice(view, tuple(raw.shape[1:]) if served.dims == 2 else served.display_shape(raw))
        if served.dims == 2:  # a 2-D model explains the slice shown
            flat = raw.select(1 + where.axis, where.index).clone()
            return self._checked(Prepared(flat, served.preprocess(flat), served.display(flat),
                                          (where.axis, where.index), None))
        shown = where.take(served.display(raw)).clone()  # the slice only, not a view of the volume
        return self._checked(Prepared(raw, served.preprocess(raw), shown, (where.axis, where.index), where))

    def _checked(self, prepared: Prepared) -> Prepared:
        pixels = math.prod(prepared.x.shape[1:])
        if pixels > self.config.max_model_pixels:
            size = "×".join(map(str, prepared.x.shape[1:]))
            raise TooLargeError(f"the model would see {size} = {pixels} pixels, more than this server explains "
                                f"({self.config.max_model_pixels}); upload a smaller image or start the server "
                                "with a larger --max-model-pixels.")
        return prepared

    def view_png(self, session: str, image: str, model: str, view: dict[str, int] | None) -> bytes:
        """The picture the page draws (a volume's slice), as PNG."""
        prepared = self.prepare(self.store.image(session, image), self.served(model), view)
        return pictures.png(pictures.display(prepared.shown))

    # ------------------------------------------------------------------ forward passes
    def layer_for(self, served: Served, x: Tensor, layer: str | None, method: Any) -> str:
        """The layer to explain: ``<input>`` for input methods, the one asked for, else the default."""
        if method.on_input:
            if layer not in (None, "", INPUT):
                raise SegcamError(f"method {method.name!r} explains the input's pixels and takes no layer; "
                                  "leave the layer empty.")
            return INPUT
        if layer == INPUT:
            raise SegcamError(f"{INPUT} is the input's pixels, explained by input methods (saliency, rise); "
                              f"method {method.name!r} needs a layer: leave it empty for the default.")
        if layer:
            return served.explainer.resolve_layer(layer)
        key = (served.name, tuple(x.shape))
        found = self._defaults.get(key)
        if found is None:
            if len(self._defaults) > 1024:  # one entry per model and image size
                self._defaults.clear()
            found = self._defaults[key] = served.explainer.default_layer(x)
        return found

    def forward(self, session: str, image: str, served: Served, prepared: Prepared, layer: str) -> Forward:
        """The kept forward pass recording ``layer`` (run now if not kept)."""
        key = (session, image, served.name, prepared.forward_view, layer)
        fwd = self.store.cache.get(key)
        if isinstance(fwd, Forward):
            return fwd
        if isinstance(fwd, str):  # known not to fit: not run again while the note is kept
            raise TooLargeError(fwd)
        with model_lock(served.model):
            fwd = self.store.cache.get(key)
            if fwd is None:
                with SavedBytes() as saved:
                    fwd = served.explainer.forward(prepared.x, layer=layer)
                weights = [*served.model.parameters(), *served.model.buffers()]
                size = forward_bytes([*saved.tensors, fwd.image, fwd.logits.values, *fwd.activations.values()],
                                     exclude=weights)
                if size > self.store.cache.room:
                    note = _too_large(size, self.store.cache.room)
                    self.store.cache.put(key, note, len(note))
                    raise TooLargeError(note)
                self.store.cache.put(key, fwd, size)
        if isinstance(fwd, str):
            raise TooLargeError(fwd)
        return fwd

    def predict(self, session: str, image: str, model: str, view: dict[str, int] | None) -> dict[str, Any]:
        """The predicted labels of the picture shown, coloured, with each class's pixel count."""
        served = self.served(model)
        prepared = self.prepare(self.store.image(session, image), served, view)
        fwd = self.forward(session, image, served, prepared, self.layer_for(served, prepared.x, None, METHODS[
            "seg-grad-cam"]))
        if not bool(torch.isfinite(fwd.logits.values).all()):
            raise ModelError(f"model {served.name!r} gives non-finite logits (NaN or inf) on this image; check its "
                             "values (a .npy may hold values far outside the range the model was trained on).")
        labels = prepared.where.take(fwd.predicted[0]) if prepared.where else fwd.predicted[0]
        counts = torch.bincount(labels.flatten(), minlength=fwd.logits.n_classes).tolist()
        names = served.class_names(fwd.logits.n_classes)
        colors = pictures.class_colors(len(names))
        return {"labels_png": pictures.data_url(pictures.labels_png(labels, colors)), "shape": list(labels.shape),
                "labels": pictures.encode_labels(labels), "volume": list(prepared.x.shape[1:]) if prepared.where
                else None, "classes": [{"index": i, "name": n, "pixels": c, "color": colors[i]}
                                       for i, (n, c) in enumerate(zip(names, counts))]}

    def layers(self, session: str, image: str, model: str, view: dict[str, int] | None) -> dict[str, Any]:
        """The explainable layers (module order) with readable names and shapes, and the default."""
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
    def explain(self, session: str, request: dict[str, Any], progress: Progress | None = None, *,
                background: bool = False) -> dict[str, Any]:
        """One explanation of ``request`` (see the API): the map shown, its score and how to reproduce it.

        A ``hover`` request of a linear method is answered from a precomputed table once one is
        built.  Long methods (forward passes only: RISE, Score-CAM) run only ``background`` (a job).
        """
        start = time.perf_counter()
        served = self.served(request["model"])
        picture = self.store.image(session, request["image"])
        prepared = self.prepare(picture, served, request.get("view"))
        method = checked_method(request["method"], request.get("options") or {}, self.config.work_limits)
        if not method.gradients and not background:
            raise SegcamError(f"method {method.name!r} runs many forward passes; start it as a job (POST "
                              f"/api/sessions/{session}/jobs with the same body), which reports progress and can "
                              "be cancelled — the page does this.")
        check_batch(method, prepared.x)
        layer = self.layer_for(served, prepared.x, request.get("layer"), method)
        fwd = self.forward(session, request["image"], served, prepared, layer)
        drawn = volume_region(request["region"], prepared.where, tuple(prepared.x.shape[1:])) if prepared.where \
            else flat_region(request["region"], tuple(prepared.x.shape[1:]))
        target = Target(class_of(request["cls"]), _rasterised(drawn, fwd))
        table = None
        if request.get("hover") and not method.on_input:
            key = self.hover.key((session, request["image"], served.name, prepared.forward_view, layer), method)
            table = self.hover.get(key, method, lambda: LinearMaps.build(
                served.explainer, fwd, layer=layer, method=method, max_bytes=self.hover.max_bytes))
        if table is not None:
            exp = table.explain(target)
        elif method.gradients:
            with model_lock(served.model):
                exp = served.explainer.explain(fwd, target, method=method, layer=layer, progress=progress)
        else:  # forward passes only: guarded batch by batch, other requests go in between
            exp = served.explainer.explain(fwd, target, method=method, layer=layer, progress=progress)
        return self._result(session, served, picture, prepared, drawn, exp, table is not None, start)

    def _result(self, session: str, served: Served, picture: Picture, prepared: Prepared, drawn: Any, exp: Any,
                fast: bool, start: float) -> dict[str, Any]:
        full, mask = exp.map[0], exp.region[0]
        shown = prepared.where.take(full) if prepared.where else full
        command, python = commands(served, picture, exp, drawn, prepared.view)
        title = f"{exp.method} · {exp.layer} · {Target(exp.cls, drawn).describe(served.explainer.class_names)}"
        kept = Result(served.name, prepared.x, prepared.picture, full, mask, exp.cls, prepared.where, prepared.shown,
                      title, command, python)
        rid = self.store.add_result(session, kept, kept.nbytes)
        return {"result": rid, "shape": list(shown.shape), "heatmap": pictures.encode_bytes(shown),
                "max": float(exp.raw.clamp(min=0).max()), "score": float(exp.score[0]),
                "region_pixels": int(mask.sum()), "cls": exp.cls, "class_name": exp.class_name,
                "layer": exp.layer, "method": exp.method, "options": exp.options,
                "ms": round(1000 * (time.perf_counter() - start), 2), "fast": fast,
                "command": command, "python": python}

    # ------------------------------------------------------------------ jobs
    def start_job(self, session: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run ``explain(request)`` in the background (for long methods); see :mod:`.jobs`.
        What can be checked now is (model, image, slice, method, options, batch size)."""
        served = self.served(request["model"])
        prepared = self.prepare(self.store.image(session, request["image"]), served, request.get("view"))
        check_batch(checked_method(request["method"], request.get("options") or {}, self.config.work_limits),
                    prepared.x)
        with self.store.lock:  # the lock under which a dropped session's jobs are cancelled
            jobs = self.store.get(session).jobs
            active = sum(j.state in ("queued", "running") for j in jobs.values())
            if active >= MAX_ACTIVE_JOBS:
                raise TooMany(f"this session already runs {active} jobs; wait for one or cancel it.")
            queued = sum(j.state in ("queued", "running") for s in self.store.sessions() for j in s.jobs.values())
            if queued >= MAX_SERVER_JOBS:
                raise TooMany(f"the server already runs {queued} jobs; try again in a moment.")
            job = Job(lambda progress: _lean(self.explain(session, request, progress, background=True)))
            jobs[job.id] = job
            finished = [k for k, j in jobs.items() if j.state not in ("queued", "running")]
            for k in finished[:max(0, len(jobs) - MAX_KEPT_JOBS)]:
                del jobs[k]
        self.runner.submit(job)
        return {"job": job.id}

    def job(self, session: str, job: str) -> Job:
        """Job ``job`` of ``session``."""
        found = self.store.get(session).jobs.get(job)
        if found is None:
            raise NotFound(f"unknown job {job!r} in this session; start it again.")
        return found

    def job_status(self, session: str, job: str) -> dict[str, Any]:
        """A job's state and progress, and once done its result (whose heatmap is read back from
        the kept result: jobs hold no maps of their own)."""
        status = self.job(session, job).status()
        result = status.get("result")
        if result is not None:
            try:
                kept = self.store.result(session, result["result"])
            except NotFound:
                status.pop("result")
                status["state"] = "error"
                status["error"] = {"kind": "NotFound", "message": "the job's result is no longer kept (the server's "
                                   "memory cap); run the job again."}
            else:
                status["result"] = {**result, "heatmap": pictures.encode_bytes(kept.on_page(kept.map))}
        return status

    def download(self, session: str, result: str, kind: str) -> tuple[bytes, str]:
        """A file of a kept result (see :mod:`.results`)."""
        return self.store.result(session, result).download(kind)

    def masking(self, session: str, result: str, threshold: float, baseline: str) -> dict[str, Any]:
        """The masking test of a kept result: Dice of the region's prediction with the map's
        pixels above ``threshold`` kept (the rest ``baseline``), and the share kept."""
        from ...evaluation import masking_test

        r: Result = self.store.result(session, result)
        served = self.served(r.model)
        out = masking_test(served.model, r.x, r.map, r.region, r.cls, threshold=threshold, baseline=baseline)
        return {"dice": out.dice, "kept": out.kept, "threshold": threshold, "baseline": baseline,
                "masked_png": pictures.data_url(pictures.png(pictures.display(r.on_page(out.masked_image))))}


def _lean(response: dict[str, Any]) -> dict[str, Any]:
    """A job's response without its heatmap (read back from the kept result when polled)."""
    return {k: v for k, v in response.items() if k != "heatmap"}


def _too_large(size: int, cap: int) -> str:
    return (f"this image's forward pass needs {size / 2**20:.0f} MB kept for its clicks, more than this server keeps "
            f"for all its users ({cap / 2**20:.0f} MB); upload a smaller image, or start the server with a larger "
            "--cache-mb or a smaller --max-model-pixels.")


def _rasterised(region: Any, fwd: Forward) -> Any:
    """A polygon as its mask, made here rather than under the model's lock (it costs
    ``O(vertices · box)``); other regions as they are."""
    if not isinstance(region, regions.Polygon):
        return region
    ctx = regions.RegionContext(fwd.spatial, 1, fwd.image.device, 0, lambda: fwd.predicted)
    return regions.mask(region.resolve(ctx)[0])


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
