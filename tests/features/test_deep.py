"""ROI inputs (slice choice, crop, scaling, 2.5-D, 3-D volume) and batched extraction maths."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from her2core.errors import Her2Error, MaskError
from her2core.features import FeatureConfig
from her2core.features import deep
from her2core.features.backbones import create_backbone
from her2core.imaging import Image

GEO = dict(spacing=(0.7, 0.7, 2.0), origin=(10.0, -5.0, 3.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def _volume():
    """20x40x30 image; ROI a box on slices 5..9 with the widest cross-section on slice 7."""
    z, y, x = np.indices((20, 40, 30))
    img = (x + 100 * z).astype(np.float32)  # slice identity readable from the value
    mask = np.zeros((20, 40, 30), np.uint8)
    mask[5:10, 18:22, 12:16] = 1
    mask[7, 15:25, 10:20] = 1          # largest slice: 10 x 10
    return Image(img, **GEO), Image(mask, **GEO)


def test_largest_slice_is_cropped_square_and_scaled():
    img, mask = _volume()
    x = deep.prepare_slices(img, mask, mode="largest", margin_px=2, percentiles=(0, 100))
    # box of the ROI over all slices: y 15..24, x 10..19, +2 px -> 14 x 14
    assert x.shape == (1, 1, 14, 14)
    assert x.min() >= 0 and x.max() <= 1
    # values come from slice 7 only (x + 700, x = 8..21); the [0, 1] scale spans
    # the whole 3-D crop (slices 4..10 with the 1-slice z margin): 408 .. 1021
    expect = (np.arange(8, 22) + 700.0 - 408.0) / (1021.0 - 408.0)
    assert_allclose(x[0, 0, 0], expect, rtol=1e-6)


def test_aggregate_takes_every_roi_slice_and_25d_three_neighbours():
    img, mask = _volume()
    agg = deep.prepare_slices(img, mask, mode="aggregate", margin_px=0, percentiles=(0, 100))
    assert agg.shape[0] == 5 and agg.shape[1] == 1
    s25 = deep.prepare_slices(img, mask, mode="25d", margin_px=0, square=False,
                              percentiles=(0, 100))
    assert s25.shape == (1, 3, 10, 10)
    # channels are slices 6, 7, 8 -> increasing values (100 per slice)
    means = s25[0].mean(axis=(1, 2))
    assert means[0] < means[1] < means[2]


def test_pad_square_keeps_aspect():
    a = np.ones((1, 1, 4, 10), np.float32)
    p = deep._pad_square(a)
    assert p.shape == (1, 1, 10, 10)
    assert p[0, 0, :3].sum() == 0 and p[0, 0, 3:7].sum() == 40


def test_empty_mask_and_phases_are_errors():
    img, mask = _volume()
    with pytest.raises(MaskError):
        deep.prepare_slices(img, mask.with_array(np.zeros_like(mask.array)))
    ph = Image(np.stack([img.array, img.array]), **GEO)
    with pytest.raises(Her2Error, match="4-D"):
        deep.prepare_slices(ph, mask)


def test_volume_is_zscored_roi_crop():
    img, mask = _volume()
    v = deep.prepare_volume(img, mask, margin_px=3)
    # in-plane box + 3 px, z only the ROI slices (paper 001: in-plane dilation)
    assert v.shape == (1, 5, 16, 16)
    assert_allclose(v.mean(), 0, atol=1e-5)
    assert_allclose(v.std(), 1, atol=1e-3)
    t = deep.resize_volume(v, 32)
    assert tuple(t.shape) == (1, 32, 32, 32)


@pytest.fixture(scope="module")
def r18():
    return create_backbone("resnet18", "random-init", seed=0, input_px=32)


def test_aggregate_features_are_the_mean_of_slice_features(r18):
    bb = r18
    cfg = FeatureConfig(sequences=["DCE"], backbones={"DCE": ["resnet18"]},
                        slice_mode="aggregate", default_weights="random-init", input_size=32)
    g = torch.Generator().manual_seed(0)
    a = deep.CaseInputs("a", slices={"DCE": {(32, 32): torch.rand(3, 1, 32, 32, generator=g)}})
    b = deep.CaseInputs("b", slices={"DCE": {(32, 32): torch.rand(1, 1, 32, 32, generator=g)}})
    bad = deep.CaseInputs("c", error=Her2Error("broken", case_id="c"))
    batch = deep.collate([a, bad, b])
    assert batch.case_ids == ["a", "b"] and batch.counts["DCE"] == [3, 1]
    assert [e.case_id for e in batch.errors] == ["c"]
    out = deep.run_batch(batch, cfg, {"resnet18": bb})["DCE__resnet18"]
    per_slice = bb.embed(a.slices["DCE"][(32, 32)]).numpy()
    assert_allclose(out[0], per_slice.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert_allclose(out[1], bb.embed(b.slices["DCE"][(32, 32)]).numpy()[0], rtol=1e-5, atol=1e-6)
    assert deep.deep_columns("DCE", "resnet18", 512)[7] == "DCE__resnet18__f0007"


def test_batching_does_not_change_features(r18):
    bb = r18
    x = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    together = bb.embed(x).numpy()
    alone = np.concatenate([bb.embed(x[i:i + 1]).numpy() for i in range(5)])
    assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
