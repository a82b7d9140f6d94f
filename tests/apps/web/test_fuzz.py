"""Fuzz the OpenAPI schema (bounded): no input makes the server fail with a 5xx.

Half of the generated calls get a real session and image id, so the fuzzer reaches the engine
(classes, regions, layers, methods and options at random) rather than stopping at "unknown session".
"""

from __future__ import annotations

import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from segcam.apps.web import WebConfig, create_app

APP = create_app(WebConfig(max_upload_bytes=2**20, work_limits={"n_masks": 64, "cells": 16, "batch_size": 16}))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def ids():
    client = TestClient(APP)
    sid = client.post("/api/sessions").json()["session"]
    image = client.post(f"/api/sessions/{sid}/samples/scene-2").json()["image"]
    result = client.post(f"/api/sessions/{sid}/explain", json={"image": image, "cls": 0}).json()["result"]
    yield {"session": sid, "image": image, "result": result}
    APP.state.workbench.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_makes_a_server_error(case, ids):
    if zlib.crc32(repr((case.operation.label, case.body, case.query)).encode()) % 2 == 0:  # reach the engine with real ids half of the time
        for key in ("session", "result"):
            if case.path_parameters and key in case.path_parameters:
                case.path_parameters[key] = ids[key]
        if isinstance(case.body, dict) and "image" in case.body:
            case.body["image"] = ids["image"]
        if case.query and "image" in case.query:
            case.query["image"] = ids["image"]
    case.call_and_validate(checks=[not_a_server_error])
