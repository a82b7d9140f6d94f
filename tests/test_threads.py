"""Sharing: threads that share one model (through one explainer, several explainers, or one kept
forward pass) get the same maps as one thread would, and the model is left as it was."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from helpers import assert_untouched, snapshot

import segcam
from segcam import Target, regions
from segcam.models import UNet

METHODS = [("seg-grad-cam", {}), ("seg-xres-cam", {"window": 2}), ("saliency", {}), ("score-cam", {}),
           ("rise", {"n_masks": 64, "cells": 4})]


def lived_in_model() -> UNet:
    model = UNet(3, 4, width=4, depth=2)
    model.train()  # mid-training: segcam must switch to eval for each call and back after
    model.head.weight.requires_grad_(False)
    return model


def jobs(n: int = 100) -> list[tuple]:
    gen = torch.Generator().manual_seed(7)
    out = []
    for i in range(n):
        image = torch.rand(3, 16, 16, generator=gen)
        y, x = (int(v) for v in torch.randint(16, (2,), generator=gen))
        method, options = METHODS[i % len(METHODS)]
        layer = None if method in ("saliency", "rise") else ("downs.1", "downs.0", None)[i % 3]
        out.append((image, Target(i % 4, regions.pixel(y, x)), method, layer, options))
    return out


def test_four_threads_sharing_one_explainer_give_the_serial_results():
    model = lived_in_model()
    before = snapshot(model)
    ex = segcam.Explainer(model)
    work = jobs()

    def run(job):
        image, target, method, layer, options = job
        return ex.explain(image, target, method=method, layer=layer, **options).map

    serial = [run(j) for j in work]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, work))
    for a, b in zip(serial, parallel):
        assert torch.allclose(a, b, atol=1e-6)
    assert_untouched(model, before)


def test_four_threads_with_their_own_explainers_on_one_model():
    model = lived_in_model()
    before = snapshot(model)
    work = jobs()

    def run(job):
        image, target, method, layer, options = job
        return segcam.explain(model, image, target, method=method, layer=layer, **options).map

    serial = [run(j) for j in work]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, work))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(serial, parallel))
    assert_untouched(model, before)


def test_four_threads_retargeting_one_kept_forward():
    model = lived_in_model().eval()
    ex = segcam.Explainer(model)
    fwd = ex.forward(torch.rand(3, 16, 16), layer="downs.1")
    targets = [Target(c, regions.box(y, x, y + 4, x + 4)) for c in range(4) for y in (0, 6) for x in (2, 9)]
    targets = (targets * 7)[:100]

    def run(t):
        return ex.explain(fwd, t).map

    serial = [run(t) for t in targets]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, targets))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(serial, parallel))
