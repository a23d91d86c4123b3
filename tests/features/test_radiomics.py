"""pyradiomics on Images: a synthetic sphere with known values, a real ultrasound image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from her2core.errors import Her2Error, MaskError
from her2core.features.radiomics import (BUILTIN_PARAMS, extract_radiomics, radiomics_columns,
                                         radiomics_provenance)
from her2core.imaging import Image

BUSI = Path("/work/shared/data/busi")


def _sphere(radius_mm=8.0, spacing=(0.8, 0.8, 1.5), shape_zyx=(24, 48, 48)):
    """Sphere in physical space on an anisotropic grid with a flipped y axis."""
    direction = (1, 0, 0, 0, -1, 0, 0, 0, 1)
    z, y, x = np.indices(shape_zyx)
    sx, sy, sz = spacing
    cz, cy, cx = (np.asarray(shape_zyx) - 1) / 2
    r2 = ((x - cx) * sx) ** 2 + ((y - cy) * sy) ** 2 + ((z - cz) * sz) ** 2
    mask = (r2 <= radius_mm ** 2).astype(np.uint8)
    rng = np.random.default_rng(0)
    img = np.where(mask > 0, rng.integers(80, 160, shape_zyx), rng.integers(0, 40, shape_zyx))
    geo = dict(spacing=spacing, origin=(-20.0, 15.0, -7.0), direction=direction)
    return (Image(img.astype(np.int16), sequence="DCE", modality="MR", **geo),
            Image(mask, sequence="mask", modality="SEG", **geo))


def test_sphere_first_order_and_shape_match_known_values():
    image, mask = _sphere()
    sel = mask.array > 0
    # no resampling: the values are those of the voxels themselves
    f = extract_radiomics(image, mask, "mri", overrides={"resampledPixelSpacing": None})
    voxel_mm3 = 0.8 * 0.8 * 1.5
    assert_allclose(f["original_firstorder_Mean"], image.array[sel].mean(), rtol=1e-10)
    assert_allclose(f["original_firstorder_Minimum"], image.array[sel].min())
    assert_allclose(f["original_firstorder_Maximum"], image.array[sel].max())
    assert_allclose(f["original_shape_VoxelVolume"], sel.sum() * voxel_mm3, rtol=1e-10)
    sphere = 4 / 3 * np.pi * 8.0 ** 3
    assert_allclose(f["original_shape_MeshVolume"], sphere, rtol=0.05)
    assert_allclose(f["original_shape_Sphericity"], 1.0, atol=0.15)
    classes = {k.split("_")[1] for k in f}
    assert classes == {"firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm"}
    assert not any(k.startswith("diagnostics") for k in f)


def test_default_mri_params_resample_to_1mm():
    image, mask = _sphere()
    f = extract_radiomics(image, mask, "mri")
    # 1 mm isotropic grid: voxel volume = voxel count
    assert f["original_shape_VoxelVolume"] == pytest.approx(round(f["original_shape_VoxelVolume"]))
    assert_allclose(f["original_shape_MeshVolume"], 4 / 3 * np.pi * 8.0 ** 3, rtol=0.06)


@pytest.mark.skipif(not (BUSI / "BUSI_10483_US.png").is_file(), reason="BUSI sample not present")
def test_real_ultrasound_image_gives_2d_features():
    from her2core.imaging import load_image
    from her2core.imaging.mask import load_mask
    us = load_image(BUSI / "BUSI_10483_US.png", sequence="US")
    mask = load_mask(BUSI / "BUSI_10483_US_mask.png", us)
    f = extract_radiomics(us, mask, "us")
    sel = mask.array > 0
    assert_allclose(f["original_firstorder_Mean"], us.array[sel].mean(), rtol=1e-10)
    assert_allclose(f["original_shape2D_PixelSurface"], sel.sum(), rtol=1e-10)
    assert {"original_shape2D_Perimeter", "original_shape2D_MaximumDiameter",
            "original_shape2D_Sphericity"} <= set(f)
    assert not any("_shape_" in k for k in f)  # no 3-D shape on a 2-D image
    assert len([k for k in f if "_glcm_" in k]) == 24
    cols = radiomics_columns("US", f)
    assert "US__radiomics__original_shape2D_PixelSurface" in cols


def test_uint8_images_are_binned_correctly():
    """pyradiomics 3.0.1 + numpy 2 overflow on uint8 bin edges; we pass float images."""
    rng = np.random.default_rng(1)
    arr = rng.integers(200, 256, (60, 60)).astype(np.uint8)
    m = np.zeros((60, 60), np.uint8)
    m[10:50, 10:50] = 1
    geo = dict(spacing=(1, 1), origin=(0, 0), direction=(1, 0, 0, 1))
    f8 = extract_radiomics(Image(arr, **geo), Image(m, **geo), "us")
    ff = extract_radiomics(Image(arr.astype(np.float32), **geo), Image(m, **geo), "us")
    assert_allclose(f8["original_glcm_JointEntropy"], ff["original_glcm_JointEntropy"], rtol=1e-12)


def test_bad_inputs_raise_her2_errors(tmp_path):
    image, mask = _sphere()
    with pytest.raises(MaskError, match="empty"):
        extract_radiomics(image, mask.with_array(np.zeros_like(mask.array)), case_id="c1")
    with pytest.raises(Her2Error, match="parameter file not found"):
        extract_radiomics(image, mask, tmp_path / "none.yaml")


def test_provenance_names_settings_and_versions():
    prov = radiomics_provenance("us")
    assert prov["settings"]["binWidth"] == 8 and prov["settings"]["force2D"] is True
    assert prov["settings"]["force2Ddimension"] == 0
    assert prov["versions"]["pyradiomics"].lstrip("v").startswith("3.")
    assert {"SimpleITK", "numpy"} <= set(prov["versions"])
    assert len(prov["params_sha256"]) == 64
    mri = radiomics_provenance("mri")
    assert mri["settings"]["resampledPixelSpacing"] == [1, 1, 1]
    assert mri["settings"]["normalize"] is False
    assert set(BUILTIN_PARAMS) == {"mri", "us", "mri_filters", "us_filters"}
    filt = radiomics_provenance("mri_filters")
    assert set(filt["image_types"]) == {"Original", "Wavelet", "LoG"}
