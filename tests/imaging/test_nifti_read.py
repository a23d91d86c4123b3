"""NIfTI voxel data decompressed once (no second read by ITK), equal to ITK's own read."""
from __future__ import annotations

import gzip
import zlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from numpy.testing import assert_array_equal

from her2core.errors import ImageLoadError
from her2core.imaging import io
from her2core.imaging.io import load_image


def _itk(path):
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.SetImageIO("NiftiImageIO")
    return r.Execute()


def _same_as_itk(image, path):
    ref = _itk(path)
    arr = sitk.GetArrayFromImage(ref)
    assert image.array.dtype == arr.dtype and image.array.shape == arr.shape
    assert_array_equal(image.array, arr)
    dim = ref.GetDimension()
    d = np.asarray(ref.GetDirection()).reshape(dim, dim)
    k = min(dim, 3)
    assert image.spacing == pytest.approx(ref.GetSpacing()[:k], abs=0)
    assert image.origin == pytest.approx(ref.GetOrigin()[:k], abs=0)
    assert image.direction == pytest.approx(tuple(d[:k, :k].ravel()), abs=0)


def _set_scaling(path, slope, inter):
    """Write scl_slope / scl_inter into a saved file (nibabel resets them on save)."""
    gz = path.name.endswith(".gz")
    data = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    data[112:120] = np.array([slope, inter], dtype="<f4").tobytes()
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    proxy = nib.load(path).dataobj
    assert (proxy.slope, proxy.inter) == (slope, inter)


def _nib_files(tmp_path):
    """(name, path) of NIfTI layouts written by nibabel with awkward headers."""
    rng = np.random.default_rng(3)
    arr = rng.integers(-500, 3000, size=(7, 6, 5)).astype(np.int16)  # nibabel order x, y, z
    c, s = np.cos(0.3), np.sin(0.3)
    aff = np.eye(4)
    aff[:3, :3] = np.array([[-c, -s, 0], [-s, c, 0], [0, 0, 1]]) @ np.diag([0.7, 0.9, 2.5])
    aff[:3, 3] = (12.5, -31.0, 47.25)
    out = []

    def save(name, img):
        p = tmp_path / name
        nib.save(img, str(p))
        out.append((name, p))

    save("int16.nii.gz", nib.Nifti1Image(arr, aff))
    save("scaled.nii.gz", nib.Nifti1Image(arr, aff))
    _set_scaling(tmp_path / "scaled.nii.gz", 0.25, -3.0)     # ITK returns float32
    save("scaled_u8.nii", nib.Nifti1Image(arr.clip(0, 255).astype(np.uint8), aff))
    _set_scaling(tmp_path / "scaled_u8.nii", 2.0, 0.0)
    save("float64.nii", nib.Nifti1Image(arr.astype(np.float64) / 7, aff))
    q = nib.Nifti1Image(arr, None)
    q.set_qform(aff, code=1)                              # qform only, sform unset
    save("qform.nii.gz", q)
    save("phases.nii.gz", nib.Nifti1Image(rng.normal(size=(7, 6, 5, 3)).astype(np.float32), aff))
    save("trailing1.nii.gz", nib.Nifti1Image(arr[..., None], aff))
    save("flat.nii.gz", nib.Nifti1Image(arr[:, :, :1], aff))
    be = nib.Nifti1Image(arr, aff, header=nib.Nifti1Header(endianness=">"))
    be.header.set_data_dtype(np.int16)
    save("bigendian.nii", be)
    assert nib.load(tmp_path / "bigendian.nii").header.endianness == ">"
    return out


def test_every_layout_equals_itk(tmp_path, vol):
    files = _nib_files(tmp_path)
    ref = vol.make_volume(dtype=np.float32)
    for name in ("sitk.nii.gz", "sitk.nii"):
        sitk.WriteImage(ref, str(tmp_path / name))
        files.append((name, tmp_path / name))
    for name, path in files:
        image = load_image(path)
        _same_as_itk(image, path)


def test_nifti_is_decompressed_once(tmp_path, vol, monkeypatch):
    path = tmp_path / "DCE.nii.gz"
    sitk.WriteImage(vol.make_volume(dtype=np.int16), str(path), useCompression=True)
    executed, inflaters = [], []
    real_execute, real_inflater = sitk.ImageFileReader.Execute, zlib.decompressobj
    monkeypatch.setattr(sitk.ImageFileReader, "Execute",
                        lambda self: executed.append(1) or real_execute(self))
    monkeypatch.setattr(io.zlib, "decompressobj",
                        lambda *a, **k: inflaters.append(a) or real_inflater(*a, **k))
    image = load_image(path, sequence="DCE")
    assert executed == [] and inflaters.count((31,)) == 1   # one gzip stream, inflated once
    monkeypatch.undo()
    _same_as_itk(image, path)


def test_vector_nifti_still_read_by_itk(tmp_path):
    rgb = np.arange(7 * 6 * 5 * 3, dtype=np.float32).reshape(7, 6, 5, 1, 3)
    img = nib.Nifti1Image(rgb, np.eye(4))
    img.header.set_intent("vector")
    nib.save(img, str(tmp_path / "rgb.nii"))
    image = load_image(tmp_path / "rgb.nii")   # RGB collapsed to grey, as before
    itk = sitk.GetArrayFromImage(_itk(tmp_path / "rgb.nii"))
    expected = np.tensordot(itk.astype(np.float64), np.asarray(io.LUMINANCE_WEIGHTS), axes=([-1], [0]))
    assert_array_equal(image.array, expected.astype(np.float32))


@pytest.mark.parametrize("cut", [0.3, 0.9, 0.999])
def test_truncated_gzip_refused(tmp_path, vol, cut):
    path = tmp_path / "full.nii.gz"
    sitk.WriteImage(vol.make_volume(dtype=np.int16), str(path), useCompression=True)
    data = path.read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ImageLoadError, match="truncated|corrupt") as err:
        load_image(bad, case_id="C7")
    assert "cut.nii.gz" in str(err.value) and "case C7" in str(err.value)


def test_multi_member_and_zero_padding_accepted(tmp_path, vol):
    path = tmp_path / "one.nii.gz"
    sitk.WriteImage(vol.make_volume(dtype=np.int16), str(path), useCompression=True)
    raw = gzip.decompress(path.read_bytes())
    two = tmp_path / "two.nii.gz"   # e.g. written by a tool that flushes members
    two.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]) + b"\0" * 16)
    assert_array_equal(load_image(two).array, load_image(path).array)


def test_corrupt_crc_refused(tmp_path, vol):
    path = tmp_path / "full.nii.gz"
    sitk.WriteImage(vol.make_volume(dtype=np.int16), str(path), useCompression=True)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    bad = tmp_path / "crc.nii.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match="corrupt") as err:
        load_image(bad)
    assert "crc.nii.gz" in str(err.value)
