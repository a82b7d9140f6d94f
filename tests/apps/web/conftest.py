"""A real server for the web tests: the default model, on 127.0.0.1, in a background thread."""

from __future__ import annotations

import pytest

from segcam.apps.web import ServerThread, WebConfig, create_app


@pytest.fixture(scope="session")
def web_app():
    return create_app(WebConfig())


@pytest.fixture(scope="session")
def live_url(web_app):
    with ServerThread(web_app) as server:
        yield server.url
