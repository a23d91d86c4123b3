"""her2core.viewer: orientation, window/level, drawing, interpolation, saving."""
import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from her2core.imaging.image import Image
from her2core import viewer as V


def _perm_direction(perm, signs):
    d = np.zeros((3, 3))
    for i, (q, s) in enumerate(zip(perm, signs)):
        d[q, i] = s  # column i = physical direction of index axis i
    return d


@pytest.mark.parametrize("perm,signs", [((0, 1, 2), (1, 1, 1)), ((0, 1, 2), (-1, -1, 1)),
                                        ((1, 0, 2), (-1, 1, 1)), ((2, 0, 1), (1, -1, -1))])
def test_canonical_axes_increase_in_lps(perm, signs):
    rng = np.random.default_rng(0)
    shape = (5, 6, 7)  # (z, y, x) numpy
    d = _perm_direction(perm, signs)
    img = Image(rng.normal(size=shape), (0.7, 1.1, 3.0), (10.0, -20.0, 5.0), tuple(d.ravel()))
    can = V.canonical(img)
    # physical position of every original voxel, laid out like the array
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    pts = img.index_to_physical(np.stack([i, j, k], -1).reshape(-1, 3)).reshape(shape + (3,))
    pc = np.stack([can.to_canonical(pts[..., a]) for a in range(3)], -1)
    # canonical axis 2 -> x (L), axis 1 -> y (P), axis 0 -> z (S), all increasing
    assert np.all(np.diff(pc[..., 0], axis=2) > 0)
    assert np.all(np.diff(pc[..., 1], axis=1) > 0)
    assert np.all(np.diff(pc[..., 2], axis=0) > 0)
    assert_allclose(np.diff(pc[..., 0], axis=2), can.spacing[0])
    assert_allclose(np.diff(pc[..., 2], axis=0), can.spacing[2])
    assert not can.oblique
    # the canonical array is the data moved the same way, and it round-trips
    assert_array_equal(can.array, can.to_canonical(img.array))
    assert_array_equal(can.from_canonical(can.array), img.array)


def test_views_follow_radiological_convention():
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # canonical z, y, x
    img = Image(arr, (1, 2, 3), (0, 0, 0), np.eye(3).ravel())
    can = V.canonical(img)
    assert_array_equal(can.get_slice("axial", 1), arr[1])
    cor = can.get_slice("coronal", 2)
    assert_array_equal(cor[0], arr[1, 2, :])  # top row = most superior slice
    sag = can.get_slice("sagittal", 3)
    assert_array_equal(sag[:, 0], arr[::-1, 0, 3])  # left column = most anterior
    assert can.pixel_size("coronal") == (1.0, 3.0)
    assert can.pixel_size("sagittal") == (2.0, 3.0)
    m = np.zeros_like(arr)
    V.put_slice(m, "coronal", 2, cor)
    assert_array_equal(m[:, 2, :], arr[:, 2, :])
    assert V.axis_labels("axial") == {"top": "A", "bottom": "P", "left": "R", "right": "L"}


def test_two_d_image():
    arr = np.arange(12).reshape(3, 4).astype(np.uint8)
    img = Image(arr, (0.1, 0.1), (0, 0), (1, 0, 0, 1))
    can = V.canonical(img)
    assert can.array.shape == (1, 3, 4) and can.n_slices("axial") == 1
    assert_array_equal(can.from_canonical(can.array), arr)


def test_window_and_presets():
    g = V.apply_window(np.array([0.0, 50.0, 100.0, 150.0]), window=100, level=100)
    assert_array_equal(g, [0, 0, 128, 255])
    pre = V.window_presets(np.arange(101.0))
    assert_allclose(pre["Auto (1-99 %)"], (98.0, 50.0))
    assert_allclose(pre["Full range"], (100.0, 50.0))


def test_compose_rgb_blends_mask_and_heat():
    grey = np.full((5, 5), 100, np.uint8)
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    rgb = V.compose_rgb(grey, mask=mask, mask_color=(0, 200, 0), mask_opacity=0.5)
    assert_array_equal(rgb[0, 0], [100, 100, 100])
    assert_array_equal(rgb[2, 2], [50, 150, 50])       # interior: 50 % blend
    assert_array_equal(rgb[1, 1], [0, 200, 0])         # outline: opaque colour
    heat = np.zeros((5, 5))
    heat[0, 0] = 1.0
    rgb2 = V.compose_rgb(grey, heat=heat, heat_opacity=1.0, heat_cmap="gray")
    assert_array_equal(rgb2[0, 0], [255, 255, 255])
    assert_array_equal(rgb2[4, 4], [100, 100, 100])


def test_polygon_and_box_rasterisation():
    m = V.polygon_to_mask([1, 4, 4, 1], [1, 1, 3, 3], (6, 6))
    assert m.sum() == 12 and m[1:4, 1:5].all()
    tri = V.polygon_to_mask([0, 10, 0], [0, 0, 10], (12, 12))
    assert tri[2, 2] and not tri[9, 9]
    assert V.polygon_to_mask([1, 2], [1, 2], (4, 4)).sum() == 0
    assert V.box_to_mask([0.5, 2.2], [1.0, 1.9], (4, 4)).sum() == 2


def test_editor_add_subtract_undo_copy_interpolate():
    ed = V.MaskEditor.empty((7, 20, 20))
    assert ed.apply_polygon("axial", 0, [5, 14, 14, 5], [5, 5, 14, 14]) == 100
    assert ed.apply_polygon("axial", 0, [5, 9, 9, 5], [5, 5, 14, 14], mode="subtract") == 50
    assert ed.voxels == 50
    assert ed.undo() and ed.voxels == 100
    assert ed.copy_to_neighbours("axial", 0, n=1) == 100
    assert ed.drawn_slices("axial") == [0, 1]
    ed.undo()
    yy, xx = np.mgrid[0:20, 0:20]
    small = (yy - 10) ** 2 + (xx - 10) ** 2 <= 2 ** 2
    big = (yy - 10) ** 2 + (xx - 10) ** 2 <= 6 ** 2
    ed.clear()
    ed.apply("axial", 0, small)
    ed.apply("axial", 6, big)
    ed.interpolate("axial", 6, 0)
    areas = [int(ed.mask[k].sum()) for k in range(7)]
    assert areas[0] == small.sum() and areas[6] == big.sum()
    assert areas == sorted(areas)
    mid = (yy - 10) ** 2 + (xx - 10) ** 2 <= 4 ** 2
    assert abs(areas[3] - mid.sum()) <= 8
    with pytest.raises(ValueError, match="both slice"):
        V.MaskEditor.empty((3, 4, 4)).interpolate("axial", 0, 2)
    for _ in range(40):
        ed.undo()
    assert not ed.undo()


def test_mask_saved_on_image_grid(tmp_path):
    import SimpleITK as sitk
    d = _perm_direction((1, 0, 2), (-1, 1, 1))
    img = Image(np.zeros((4, 5, 6), np.int16), (0.8, 0.9, 2.5), (3.0, 4.0, 5.0), tuple(d.ravel()))
    can = V.canonical(img)
    ed = V.MaskEditor.empty(can.array.shape)
    ed.apply("axial", 1, np.ones(can.get_slice("axial", 1).shape, bool))
    data = V.mask_to_nifti_bytes(ed.mask, can, img)
    p = tmp_path / "m.nii.gz"
    p.write_bytes(data)
    back = sitk.ReadImage(str(p))
    assert_allclose(back.GetSpacing(), img.spacing, atol=1e-5)
    assert_allclose(back.GetOrigin(), img.origin, atol=1e-4)
    assert_allclose(back.GetDirection(), img.direction, atol=1e-5)
    arr = sitk.GetArrayFromImage(back)
    assert_array_equal(arr, can.from_canonical(ed.mask).astype(np.uint8))
    assert arr.sum() == 5 * 6


def test_slice_figure_has_selectable_points():
    fig = V.slice_figure(np.zeros((40, 50, 3), np.uint8), (1.0, 2.0), title="t",
                         labels=V.axis_labels("axial"))
    assert fig.layout.dragmode == "lasso"
    assert len(fig.data[1].x) == 2000
    assert fig.layout.yaxis.scaleratio == 2.0
