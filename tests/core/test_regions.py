"""Tests for segcam.regions: every region kind resolved against a hand-built RegionContext."""

from __future__ import annotations

import itertools
from collections import deque
from fractions import Fraction

import numpy as np
import pytest
import torch

from segcam.core.regions import (
    Box,
    Everything,
    Mask,
    RegionContext,
    as_region,
    box,
    everything,
    flood_fill,
    instance,
    mask,
    pixel,
    pixels,
    polygon,
    predicted,
    voxel,
)
from segcam.errors import RegionError


def ctx(spatial, predicted_labels=None, cls=1, batch=1):
    """A RegionContext; the prediction defaults to all zeros."""
    if predicted_labels is None:
        predicted_labels = torch.zeros((batch, *spatial), dtype=torch.long)
    else:
        predicted_labels = torch.as_tensor(predicted_labels, dtype=torch.long)
        if predicted_labels.ndim == len(spatial):
            predicted_labels = predicted_labels[None]
    assert tuple(predicted_labels.shape[1:]) == tuple(spatial)
    return RegionContext.of_labels(predicted_labels, cls)


# --------------------------------------------------------------------------- pixel / voxel


def test_pixel_marks_exactly_one_pixel_row_first():
    m = pixel(2, 4).resolve(ctx((5, 6)))
    want = np.zeros((1, 5, 6), dtype=bool)
    want[0, 2, 4] = True  # numpy indexing: row 2, column 4
    assert m.dtype == torch.bool
    np.testing.assert_array_equal(m.numpy(), want)


def test_pixel_is_set_in_every_image_of_the_batch():
    m = pixel(0, 1).resolve(ctx((3, 3), batch=2))
    assert m.shape == (2, 3, 3)
    assert m.sum().item() == 2
    assert m[:, 0, 1].all()


def test_voxel_marks_slice_row_column():
    m = voxel(1, 2, 3).resolve(ctx((3, 4, 5)))
    want = np.zeros((1, 3, 4, 5), dtype=bool)
    want[0, 1, 2, 3] = True
    np.testing.assert_array_equal(m.numpy(), want)


def test_pixels_marks_each_point():
    points = [(0, 0), (2, 3), (4, 5)]
    m = pixels(points).resolve(ctx((5, 6)))
    want = np.zeros((1, 5, 6), dtype=bool)
    for r, c in points:
        want[0, r, c] = True
    np.testing.assert_array_equal(m.numpy(), want)


def test_pixels_empty_list_is_rejected():
    with pytest.raises(RegionError):
        pixels([])


@pytest.mark.parametrize("point", [(5, 0), (0, 6), (-1, 0), (0, -1), (10, 10)])
def test_pixel_outside_image_names_image_size(point):
    with pytest.raises(RegionError, match=r"\(5, 6\)"):
        pixel(*point).resolve(ctx((5, 6)))


def test_voxel_outside_volume_is_rejected():
    with pytest.raises(RegionError, match=r"\(3, 4, 5\)"):
        voxel(3, 0, 0).resolve(ctx((3, 4, 5)))


def test_pixel_with_two_coordinates_on_3d_image_is_rejected():
    with pytest.raises(RegionError, match="2 coordinate"):
        pixel(1, 1).resolve(ctx((3, 4, 5)))


def test_voxel_on_2d_image_is_rejected():
    with pytest.raises(RegionError, match="3 coordinate"):
        voxel(1, 1, 1).resolve(ctx((4, 5)))


@pytest.mark.parametrize("coords", [(2.5, 1), (1, np.float32(0.5)), (True, 1), ("1", 2)])
def test_non_integer_coordinates_rejected_at_construction(coords):
    with pytest.raises(RegionError, match="integers"):
        pixel(*coords)


def test_integral_floats_and_numpy_ints_are_accepted():
    p = pixel(3.0, np.int64(1))
    assert p.points == ((3, 1),)
    assert all(type(c) is int for c in p.points[0])
    assert p.resolve(ctx((5, 5)))[0, 3, 1]


# --------------------------------------------------------------------------- box


def test_box_is_end_exclusive_like_slicing():
    m = box(1, 2, 4, 6).resolve(ctx((7, 8)))
    want = np.zeros((7, 8), dtype=bool)
    want[1:4, 2:6] = True
    np.testing.assert_array_equal(m[0].numpy(), want)


def test_box_covering_whole_image_is_allowed():
    m = box(0, 0, 7, 8).resolve(ctx((7, 8), batch=2))
    assert m.shape == (2, 7, 8) and m.all()


def test_box_3d_with_six_bounds():
    m = box(1, 0, 2, 3, 2, 5).resolve(ctx((4, 3, 6)))
    want = np.zeros((4, 3, 6), dtype=bool)
    want[1:3, 0:2, 2:5] = True
    np.testing.assert_array_equal(m[0].numpy(), want)


@pytest.mark.parametrize(
    "bounds",
    [
        (0, 0, 8, 4),  # stop > size on rows
        (0, 0, 4, 9),  # stop > size on columns
        (-1, 0, 3, 3),  # negative start
        (3, 0, 3, 4),  # start == stop
        (4, 0, 2, 4),  # start > stop
    ],
)
def test_box_not_fitting_the_image_is_rejected(bounds):
    with pytest.raises(RegionError, match=r"\(7, 8\)"):
        box(*bounds).resolve(ctx((7, 8)))


@pytest.mark.parametrize("n", [3, 5, 7])
def test_box_with_wrong_number_of_bounds_rejected_at_construction(n):
    with pytest.raises(RegionError, match=str(n)):
        box(*range(n))


def test_box_with_four_bounds_on_3d_image_is_rejected():
    with pytest.raises(RegionError, match="3-D"):
        box(0, 0, 2, 2).resolve(ctx((3, 4, 5)))


def test_box_with_six_bounds_on_2d_image_is_rejected():
    with pytest.raises(RegionError, match="2-D"):
        box(0, 0, 0, 1, 1, 1).resolve(ctx((4, 5)))


def test_box_constructor_splits_start_and_stop():
    assert box(1, 2, 4, 6) == Box((1, 2), (4, 6))


# --------------------------------------------------------------------------- polygon


def test_rectangle_polygon_includes_pixels_on_its_edges():
    m = polygon([(1, 1), (1, 5), (4, 5), (4, 1)]).resolve(ctx((7, 8)))
    want = np.zeros((7, 8), dtype=bool)
    want[1:5, 1:6] = True  # rows 1..4, columns 1..5 inclusive
    np.testing.assert_array_equal(m[0].numpy(), want)


def _triangle_brute_force(vertices, h, w):
    """Pixel centres inside or on the triangle, by exact barycentric coordinates."""
    (ay, ax), (by, bx), (cy, cx) = [(Fraction(y), Fraction(x)) for y, x in vertices]
    det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    out = np.zeros((h, w), dtype=bool)
    for py in range(h):
        for px in range(w):
            l1 = ((by - cy) * (px - cx) + (cx - bx) * (py - cy)) / det
            l2 = ((cy - ay) * (px - cx) + (ax - cx) * (py - cy)) / det
            l3 = 1 - l1 - l2
            out[py, px] = l1 >= 0 and l2 >= 0 and l3 >= 0
    return out


@pytest.mark.parametrize(
    "vertices",
    [
        [(2, 3), (17, 8), (6, 18)],
        [(6, 18), (17, 8), (2, 3)],  # opposite winding
        [(0, 0), (19, 0), (0, 19)],  # hypotenuse through many pixel centres
        [(0, 10), (19, 19), (19, 0)],
    ],
)
def test_triangle_polygon_matches_barycentric_brute_force(vertices):
    m = polygon(vertices).resolve(ctx((20, 20)))
    want = _triangle_brute_force(vertices, 20, 20)
    assert want.sum() > 10  # the test triangle is not degenerate
    np.testing.assert_array_equal(m[0].numpy(), want)


def test_polygon_is_repeated_over_the_batch():
    m = polygon([(0, 0), (0, 3), (3, 0)]).resolve(ctx((5, 5), batch=3))
    assert m.shape == (3, 5, 5)
    assert torch.equal(m[0], m[2])


@pytest.mark.parametrize("vertex", [(7, 2), (2, 8), (-0.5, 2), (2, -1)])
def test_polygon_vertex_outside_image_is_rejected(vertex):
    with pytest.raises(RegionError, match=r"\(7, 8\)"):
        polygon([(0, 0), (0, 3), vertex]).resolve(ctx((7, 8)))


@pytest.mark.parametrize("vertices", [[], [(0, 0)], [(0, 0), (3, 3)]])
def test_polygon_with_fewer_than_three_vertices_is_rejected(vertices):
    with pytest.raises(RegionError, match="at least 3"):
        polygon(vertices)


def test_polygon_on_3d_image_is_rejected():
    with pytest.raises(RegionError, match="2-D"):
        polygon([(0, 0), (0, 3), (3, 0)]).resolve(ctx((4, 5, 5)))


# --------------------------------------------------------------------------- mask


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a,  # numpy bool
        lambda a: a.astype(np.int64),  # numpy 0/1 ints
        lambda a: a.astype(np.float32),  # numpy 0./1. floats
        lambda a: torch.from_numpy(a),  # torch bool
        lambda a: torch.from_numpy(a).to(torch.uint8),  # torch 0/1
    ],
    ids=["np-bool", "np-int", "np-float", "torch-bool", "torch-uint8"],
)
def test_mask_accepts_bool_and_zero_one_arrays(convert):
    a = np.zeros((4, 5), dtype=bool)
    a[1, 2] = a[3, 4] = a[0, 0] = True
    m = mask(convert(a)).resolve(ctx((4, 5), batch=2))
    assert m.dtype == torch.bool
    np.testing.assert_array_equal(m.numpy(), np.stack([a, a]))


def test_mask_of_wrong_shape_names_both_shapes():
    with pytest.raises(RegionError, match=r"\(4, 6\)") as err:
        mask(np.ones((4, 6), dtype=bool)).resolve(ctx((4, 5)))
    assert "(4, 5)" in str(err.value)


@pytest.mark.parametrize("values", [[[0, 2]], [[0.5, 1.0]], [[-1, 1]]])
def test_mask_with_values_other_than_zero_and_one_is_rejected(values):
    with pytest.raises(RegionError, match="0 and 1"):
        mask(np.array(values))


def test_batched_mask_gives_each_image_its_own_mask():
    a = np.zeros((2, 3, 4), dtype=bool)
    a[0, 0, 0] = True
    a[1, 2, 3] = True
    m = mask(a).resolve(ctx((3, 4), batch=2))
    np.testing.assert_array_equal(m.numpy(), a)


def test_batched_mask_with_wrong_batch_size_is_rejected():
    with pytest.raises(RegionError, match=r"\(3, 3, 4\)"):
        mask(np.ones((3, 3, 4), dtype=bool)).resolve(ctx((3, 4), batch=2))


def test_empty_mask_is_rejected_when_resolved():
    with pytest.raises(RegionError, match="empty"):
        mask(np.zeros((3, 4), dtype=bool)).resolve(ctx((3, 4)))


def test_mask_empty_for_one_image_of_batch_names_that_image():
    a = np.zeros((2, 3, 4), dtype=bool)
    a[0, 1, 1] = True
    with pytest.raises(RegionError, match=r"\[1\]"):
        mask(a).resolve(ctx((3, 4), batch=2))


def test_resolved_mask_does_not_alias_the_users_array():
    t = torch.zeros((3, 4), dtype=torch.bool)
    t[0, 0] = True
    m = mask(t).resolve(ctx((3, 4)))
    m[0, 2, 2] = True
    assert t.sum().item() == 1


# --------------------------------------------------------------------------- predicted


PRED = torch.tensor(
    [
        [0, 1, 1, 0, 2],
        [0, 1, 0, 0, 2],
        [3, 3, 0, 1, 1],
    ]
)


def test_predicted_is_the_predicted_class_map():
    m = predicted().resolve(ctx((3, 5), PRED, cls=1))
    np.testing.assert_array_equal(m[0].numpy(), (PRED == 1).numpy())


def test_predicted_within_box_is_the_intersection():
    m = predicted(within=box(0, 0, 2, 3)).resolve(ctx((3, 5), PRED, cls=1))
    want = np.zeros((3, 5), dtype=bool)
    want[0, 1] = want[0, 2] = want[1, 1] = True
    np.testing.assert_array_equal(m[0].numpy(), want)


def test_class_not_predicted_lists_the_predicted_classes():
    with pytest.raises(RegionError, match=r"class 4 is not predicted") as err:
        predicted().resolve(ctx((3, 5), PRED, cls=4))
    assert "[0, 1, 2, 3]" in str(err.value)


def test_class_not_predicted_inside_within_names_the_region():
    with pytest.raises(RegionError, match=r"inside box\(0, 4, 2, 5\)"):
        predicted(within=box(0, 4, 2, 5)).resolve(ctx((3, 5), PRED, cls=1))


def test_predicted_missing_in_one_image_of_batch_names_the_image():
    labels = torch.stack([PRED, torch.zeros_like(PRED)])
    with pytest.raises(RegionError, match=r"image\(s\) \[1\]") as err:
        predicted().resolve(ctx((3, 5), labels, cls=1))
    assert "[0]" in str(err.value)  # the classes predicted in that image


def test_predicted_for_a_batch_gives_each_image_its_own_map():
    labels = torch.stack([PRED, PRED.flip(1)])
    m = predicted().resolve(ctx((3, 5), labels, cls=2))
    np.testing.assert_array_equal(m.numpy(), (labels == 2).numpy())


# --------------------------------------------------------------------------- instance


def test_instance_selects_only_the_blob_under_the_pixel():
    labels = torch.zeros((6, 8), dtype=torch.long)
    labels[0:2, 0:3] = 1
    labels[3:6, 5:8] = 1
    m = instance(4, 6).resolve(ctx((6, 8), labels, cls=1))
    want = np.zeros((6, 8), dtype=bool)
    want[3:6, 5:8] = True
    np.testing.assert_array_equal(m[0].numpy(), want)


DIAGONAL = torch.tensor(
    [
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 1, 1],
        [0, 0, 1, 1],
    ]
)


def test_instance_four_connectivity_keeps_diagonal_blobs_apart():
    m = instance(0, 0).resolve(ctx((4, 4), DIAGONAL, cls=1))
    want = np.zeros((4, 4), dtype=bool)
    want[0:2, 0:2] = True
    np.testing.assert_array_equal(m[0].numpy(), want)


def test_instance_full_connectivity_joins_diagonal_blobs():
    m = instance(0, 0, full_connectivity=True).resolve(ctx((4, 4), DIAGONAL, cls=1))
    np.testing.assert_array_equal(m[0].numpy(), (DIAGONAL == 1).numpy())


def _serpentine(size):
    """A 4-connected snake of width 1 through a size x size grid (path ~ size**2 / 2 long)."""
    s = np.zeros((size, size), dtype=bool)
    s[0::2, :] = True
    for i, r in enumerate(range(1, size, 2)):
        s[r, size - 1 if i % 2 == 0 else 0] = True
    return s


def test_instance_fills_a_long_snake_completely():
    snake = _serpentine(11)  # 71 pixels, the far end 70 steps from (0, 0)
    labels = np.zeros((12, 12), dtype=np.int64)
    labels[:11, :11] = snake
    labels[11, 11] = 1  # touches the snake's end only diagonally
    m = instance(0, 0).resolve(ctx((12, 12), torch.from_numpy(labels), cls=1))
    want = np.zeros((12, 12), dtype=bool)
    want[:11, :11] = snake
    assert want.sum() == 71
    np.testing.assert_array_equal(m[0].numpy(), want)


def test_instance_on_pixel_of_other_class_names_that_class():
    labels = torch.zeros((4, 4), dtype=torch.long)
    labels[2, 3] = 2
    labels[0, 0] = 1
    with pytest.raises(RegionError, match="predicted as class 2"):
        instance(2, 3).resolve(ctx((4, 4), labels, cls=1))


def test_instance_fails_if_pixel_is_other_class_in_any_image_of_batch():
    labels = torch.ones((2, 3, 3), dtype=torch.long)
    labels[1, 1, 1] = 0
    with pytest.raises(RegionError, match="class 0"):
        instance(1, 1).resolve(ctx((3, 3), labels, cls=1))


def test_instance_outside_image_is_rejected():
    with pytest.raises(RegionError, match=r"\(4, 4\)"):
        instance(4, 0).resolve(ctx((4, 4), DIAGONAL, cls=1))


def test_instance_per_image_of_batch():
    labels = torch.stack([DIAGONAL, torch.ones_like(DIAGONAL)])
    m = instance(1, 1).resolve(ctx((4, 4), labels, cls=1))
    assert m[0].sum().item() == 4
    assert m[1].all()


def _corner_touching_volume():
    labels = torch.zeros((4, 4, 4), dtype=torch.long)
    labels[0:2, 0:2, 0:2] = 1
    labels[2:4, 2:4, 2:4] = 1  # shares only the corner between (1,1,1) and (2,2,2)
    return labels


def test_instance_3d_six_connectivity_keeps_corner_touching_blobs_apart():
    labels = _corner_touching_volume()
    m = instance(0, 0, 0).resolve(ctx((4, 4, 4), labels, cls=1))
    want = np.zeros((4, 4, 4), dtype=bool)
    want[0:2, 0:2, 0:2] = True
    np.testing.assert_array_equal(m[0].numpy(), want)


def test_instance_3d_full_connectivity_joins_corner_touching_blobs():
    labels = _corner_touching_volume()
    m = instance(0, 0, 0, full_connectivity=True).resolve(ctx((4, 4, 4), labels, cls=1))
    np.testing.assert_array_equal(m[0].numpy(), (labels == 1).numpy())


def _bfs(allowed, seed, full):
    offsets = [
        d
        for d in itertools.product((-1, 0, 1), repeat=allowed.ndim)
        if any(d) and (full or sum(map(abs, d)) == 1)
    ]
    out = np.zeros_like(allowed)
    out[seed] = True
    queue = deque([seed])
    while queue:
        p = queue.popleft()
        for d in offsets:
            q = tuple(a + b for a, b in zip(p, d))
            if all(0 <= c < s for c, s in zip(q, allowed.shape)) and allowed[q] and not out[q]:
                out[q] = True
                queue.append(q)
    return out


@pytest.mark.parametrize("full", [False, True], ids=["face", "full"])
@pytest.mark.parametrize("shape", [(40, 40), (10, 12, 14)], ids=["2d", "3d"])
def test_flood_fill_matches_breadth_first_search(shape, full):
    rng = np.random.default_rng(1234)
    allowed = rng.random(shape) < (0.55 if len(shape) == 2 else 0.3)
    seeds = [tuple(int(c) for c in p) for p in np.argwhere(allowed)]
    picked = [seeds[i] for i in rng.choice(len(seeds), size=6, replace=False)]
    sizes = set()
    for seed in picked:
        got = flood_fill(torch.from_numpy(allowed), seed, full_connectivity=full)
        want = _bfs(allowed, seed, full)
        sizes.add(int(want.sum()))
        assert got.dtype == torch.bool
        np.testing.assert_array_equal(got.numpy(), want, err_msg=f"seed {seed}")
    assert max(sizes) > 20  # at least one component needs several dilation rounds


# --------------------------------------------------------------------------- everything / as_region


def test_everything_is_all_true_with_batch_dim():
    m = everything().resolve(ctx((3, 4, 5), batch=2))
    assert m.shape == (2, 3, 4, 5) and m.dtype == torch.bool and m.all()


def test_as_region_none_is_everything():
    assert isinstance(as_region(None), Everything)


@pytest.mark.parametrize(
    "value", [np.eye(3, dtype=bool), torch.eye(3, dtype=torch.bool)], ids=["numpy", "torch"]
)
def test_as_region_array_is_a_mask(value):
    r = as_region(value)
    assert isinstance(r, Mask)
    np.testing.assert_array_equal(r.resolve(ctx((3, 3)))[0].numpy(), np.eye(3, dtype=bool))


def test_as_region_passes_regions_through():
    r = box(0, 0, 1, 1)
    assert as_region(r) is r


@pytest.mark.parametrize("value", ["foo", 3, [[True]]])
def test_as_region_rejects_other_types(value):
    with pytest.raises(RegionError, match=type(value).__name__):
        as_region(value)


# --------------------------------------------------------------------------- describe / repr


@pytest.mark.parametrize(
    "region",
    [
        everything(),
        pixel(1, 2),
        voxel(1, 2, 3),
        pixels([(0, 0), (1, 1)]),
        box(0, 0, 2, 2),
        polygon([(0, 0), (0, 2), (2, 0)]),
        mask(np.eye(3, dtype=bool)),
        predicted(),
        predicted(within=box(0, 0, 2, 2)),
        instance(1, 1),
    ],
    ids=repr,
)
def test_describe_and_repr_are_non_empty_strings(region):
    assert isinstance(region.describe(), str) and region.describe()
    assert isinstance(repr(region), str) and repr(region)


def test_repr_of_pixel_reads_like_the_call():
    assert repr(pixel(120, 64)) == "pixel(120, 64)"
    assert repr(box(1, 2, 4, 6)) == "box(1, 2, 4, 6)"
