"""``segcam serve``: the interactive web tool (needs ``pip install 'segcam[web]'``).

>>> from segcam.apps.web import WebConfig, create_app, ServerThread    # doctest: +SKIP
>>> with ServerThread(create_app(WebConfig())) as server:              # doctest: +SKIP
...     print(server.url)

The page (``static/``) talks to the JSON API of :mod:`.server`; the work is done by
:class:`.workbench.Workbench`, which keeps each session's forward passes so that a click costs
one backward pass.
"""

from typing import Any

from .config import ModelSpec, WebConfig

__all__ = ["ModelSpec", "ServerThread", "WebConfig", "create_app"]


def __getattr__(name: str) -> Any:  # the server needs FastAPI: imported on first use only
    if name in ("ServerThread", "create_app"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
