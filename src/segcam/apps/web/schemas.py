"""The request bodies the server accepts, with their bounds (they also make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from .regions import MAX_POINTS

Coordinate = Annotated[int, Field(ge=-(2**31), le=2**31)]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2)]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class View(Strict):
    """Slice ``index`` along ``axis`` (0, 1, 2 of D, H, W) of a volume; ignored for 2-D images."""

    axis: int = Field(0, ge=0, le=2)
    index: int | None = Field(None, ge=0, le=2**31)


class RegionSpec(Strict):
    """A region drawn on the picture shown; points are ``[y, x]``."""

    kind: Literal["pixel", "box", "polygon", "brush", "object", "class", "all"]
    points: list[Point] = Field(default_factory=list, max_length=MAX_POINTS)
    radius: int = Field(3, ge=0, le=256)


class ImageRequest(Strict):
    image: Id
    model: str = Field("default", min_length=1, max_length=200)
    view: View | None = None


class ExplainRequest(ImageRequest):
    cls: StrictInt | Annotated[str, Field(min_length=1, max_length=200)] = Field(description="class index or name")
    region: RegionSpec = Field(default_factory=lambda: RegionSpec(kind="all"))
    layer: str | None = Field(None, max_length=500)
    method: str = Field("seg-grad-cam", min_length=1, max_length=100)
    options: dict[str, Any] = Field(default_factory=dict, max_length=32)
    hover: bool = False


class MaskingRequest(Strict):
    threshold: float = Field(0.2, ge=0, le=1)
    baseline: Literal["mean", "zero", "blur"] = "mean"


def view_dict(view: View | None) -> dict[str, int] | None:
    if view is None:
        return None
    return {k: v for k, v in view.model_dump().items() if v is not None}
