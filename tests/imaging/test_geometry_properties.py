"""Property checks of the geometry conventions against SimpleITK on random grids."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from her2core.imaging import Image, ops
from her2core.imaging.io import from_nibabel, to_nibabel


@st.composite
def grids(draw):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))[None, :]
    if draw(st.booleans()):
        q[:, 1] *= -1                      # left-handed
    size = tuple(int(v) for v in rng.integers(2, 7, size=3))
    spacing = tuple(float(v) for v in rng.uniform(0.2, 4.0, size=3))
    origin = tuple(float(v) for v in rng.uniform(-200, 200, size=3))
    arr = rng.normal(size=size[::-1]).astype(np.float32)
    return Image(arr, spacing, origin, q.ravel()), rng


@settings(max_examples=30, deadline=None)
@given(grids())
def test_index_physical_matches_sitk_and_nibabel(grid):
    image, rng = grid
    s = image.to_sitk()
    idx = rng.uniform(-1, 5, size=(4, 3))
    for i in idx:
        p = s.TransformContinuousIndexToPhysicalPoint(i.tolist())
        assert_allclose(image.index_to_physical(i), p, atol=1e-9)
        assert_allclose(image.physical_to_index(p), i, atol=1e-9)
    nii = to_nibabel(image)
    ras = (nii.affine @ np.c_[idx, np.ones(len(idx))].T).T[:, :3]
    # NIfTI stores its affine in float32
    assert_allclose(ras * [-1, -1, 1], image.index_to_physical(idx), atol=1e-4)
    back = from_nibabel(nii)
    assert_array_equal(back.array, image.array)
    assert_allclose(back.affine(), image.affine(), atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(grids())
def test_crop_paste_round_trip(grid):
    image, rng = grid
    m = np.zeros(image.shape, np.uint8)
    z, y, x = (int(rng.integers(0, n)) for n in image.shape)
    m[z, y, x] = 1
    mask = image.with_array(m, modality="SEG")
    crop = ops.crop_to_roi(image, mask, margin_px=tuple(int(v) for v in rng.integers(0, 3, 3)))
    assert crop.array[tuple(np.subtract((z, y, x), crop.meta["crop_start"][::-1]))] == \
        image.array[z, y, x]
    back = ops.paste_into(image, crop, fill=np.float32(np.nan))
    inside = ~np.isnan(back.array)
    assert_array_equal(back.array[inside], image.array[inside])
    assert inside.sum() == crop.array.size
