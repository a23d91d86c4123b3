"""Loading / saving every format with exact geometry, and the input guards."""
from __future__ import annotations

import shutil
from pathlib import Path
import zipfile

import nibabel as nib
import pydicom
import numpy as np
import pytest
import SimpleITK as sitk
from numpy.testing import assert_allclose, assert_array_equal

from her2core.errors import ImageLoadError, InputLimitError
from her2core.imaging import Image, io
from her2core.imaging.io import (from_nibabel, list_dicom_series, load_image, ras_affine,
                                 save_image, to_nibabel)

VOXELS = [(0, 0, 0), (6, 5, 4), (3, 2, 1), (1, 4, 3)]  # (x, y, z) indices


def assert_same_geometry(image: Image, ref: sitk.Image, atol=1e-5):
    assert_allclose(image.spacing, ref.GetSpacing(), atol=atol)
    assert_allclose(image.origin, ref.GetOrigin(), atol=atol)
    assert_allclose(image.direction, ref.GetDirection(), atol=atol)
    for idx in VOXELS:
        expected = ref.TransformIndexToPhysicalPoint(idx)
        assert_allclose(image.index_to_physical(idx), expected, atol=atol)
        assert_allclose(image.to_sitk(phase=0 if image.is_phases else None)
                        .TransformIndexToPhysicalPoint(idx), expected, atol=atol)
        assert_allclose(image.physical_to_index(expected), idx, atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_volume_round_trip(tmp_path, vol, suffix, dtype):
    ref = vol.make_volume(dtype=dtype)
    path = tmp_path / f"T2{suffix}"
    sitk.WriteImage(ref, str(path))
    image = load_image(path, sequence="T2")
    assert image.array.dtype == dtype
    assert image.array.shape == vol.SHAPE
    assert_array_equal(image.array, sitk.GetArrayFromImage(ref))
    assert_same_geometry(image, ref)
    assert (image.sequence, image.modality, image.source) == ("T2", "MR", str(path))
    # our writer round-trips too
    out = save_image(image, tmp_path / f"again{suffix}")
    again = load_image(out)
    assert_array_equal(again.array, image.array)
    assert_allclose(again.direction, image.direction, atol=1e-5)


def test_nibabel_affine_maps_same_voxels(tmp_path, vol):
    ref = vol.make_volume()
    path = tmp_path / "T1.nii.gz"
    sitk.WriteImage(ref, str(path))
    image = load_image(path)
    nii_file = nib.load(str(path))          # nibabel's own reading of the file
    nii_ours = to_nibabel(image)            # our conversion
    for idx in VOXELS:
        lps = np.asarray(ref.TransformIndexToPhysicalPoint(idx))
        for affine in (nii_file.affine, nii_ours.affine, ras_affine(image)):
            ras = affine @ np.array([*idx, 1.0])
            assert_allclose(ras[:3] * np.array([-1, -1, 1]), lps, atol=1e-4)
        # same voxel value at the same index in nibabel's (x, y, z) order
        assert nii_ours.get_fdata()[idx] == pytest.approx(float(image.array[idx[::-1]]))
        assert np.asarray(nii_file.dataobj)[idx] == image.array[idx[::-1]]
    back = from_nibabel(nii_file)
    assert_array_equal(back.array, image.array)
    assert_allclose(back.spacing, image.spacing, atol=1e-5)
    assert_allclose(back.origin, image.origin, atol=1e-4)
    assert_allclose(back.direction, image.direction, atol=1e-5)
    back2 = from_nibabel(nii_ours)
    assert_array_equal(back2.array, image.array)
    assert_allclose(back2.affine(), image.affine(), atol=1e-5)


def test_dicom_series_sorted_by_position_not_name(tmp_path, vol):
    ref = vol.make_volume(direction=vol.DIR_DICOM, dtype=np.int16)
    files = vol.write_dicom_series(ref, tmp_path / "DCE", uid="1.2.826.0.1.3680043.2.1125.7.1")
    assert sorted(files) != files  # file-name order differs from position order
    image = load_image(tmp_path / "DCE", sequence="DCE")
    assert_array_equal(image.array, sitk.GetArrayFromImage(ref))
    assert_same_geometry(image, ref)
    assert image.meta["n_slices"] == 5
    # a zip of the folder gives the same image; its temp folder is gone afterwards
    zpath = tmp_path / "DCE.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in files:
            zf.write(f, f"sub/{f.name}")
    zimage = load_image(zpath)
    assert_array_equal(zimage.array, image.array)
    assert_same_geometry(zimage, ref)
    assert zimage.source == str(zpath)


def test_dicom_left_handed_direction_keeps_physical_points(tmp_path, vol):
    # DICOM stacks along row x column; a left-handed volume comes back z-flipped,
    # with every voxel at the same physical point.
    ref = vol.make_volume(direction=vol.DIR_FLIP, dtype=np.int16)
    vol.write_dicom_series(ref, tmp_path / "s", uid="1.2.3.4.5")
    image = load_image(tmp_path / "s")
    arr = sitk.GetArrayFromImage(ref)
    assert_array_equal(image.array, arr[::-1])
    for x, y, z in VOXELS:
        p_ref = ref.TransformIndexToPhysicalPoint((x, y, z))
        assert_allclose(image.index_to_physical((x, y, 4 - z)), p_ref, atol=1e-5)


def test_dicom_several_series(tmp_path, vol):
    a = vol.make_volume(direction=vol.DIR_DICOM, dtype=np.int16, seed=1)
    b = vol.make_volume(direction=vol.DIR_DICOM, dtype=np.int16, seed=2)
    vol.write_dicom_series(a, tmp_path / "two" / "a", uid="1.2.3.100")
    vol.write_dicom_series(b, tmp_path / "two" / "b", uid="1.2.3.200")
    (tmp_path / "two" / "notes.txt").write_text("not dicom")
    infos = {s.uid: s for s in list_dicom_series(tmp_path / "two")}
    assert sorted(infos) == ["1.2.3.100", "1.2.3.200"]
    assert infos["1.2.3.200"].n_files == 5 and infos["1.2.3.200"].modality == "MR"
    with pytest.raises(ImageLoadError) as err:
        load_image(tmp_path / "two", case_id="P7")
    msg = str(err.value)
    assert "1.2.3.100" in msg and "1.2.3.200" in msg and "series_uid" in msg
    assert "case P7" in msg and "two" in msg
    chosen = load_image(tmp_path / "two", series_uid="1.2.3.200")
    assert_array_equal(chosen.array, sitk.GetArrayFromImage(b))
    with pytest.raises(ImageLoadError, match="1.2.3.999 not found"):
        load_image(tmp_path / "two", series_uid="1.2.3.999")


def test_dicom_missing_slice_is_refused(tmp_path, vol):
    ref = vol.make_volume(direction=vol.DIR_DICOM, dtype=np.int16)
    files = vol.write_dicom_series(ref, tmp_path / "s", uid="1.2.3.4")
    files[2].unlink()  # the middle slice by position
    with pytest.raises(ImageLoadError, match="uneven"):
        load_image(tmp_path / "s")


def test_zip_guards(tmp_path, vol):
    ref = vol.make_volume(direction=vol.DIR_DICOM, dtype=np.int16)
    files = vol.write_dicom_series(ref, tmp_path / "s", uid="1.2.3.4")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.write(files[0], "ok/a.dcm")
        zf.writestr("../../escape.dcm", b"x")
    with pytest.raises(ImageLoadError, match="outside the archive") as err:
        load_image(evil)
    assert "evil.zip" in str(err.value)
    assert not (tmp_path.parent / "escape.dcm").exists()
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.name)
        zf.writestr("zeros.bin", b"\0" * 200_000)
    with pytest.raises(InputLimitError, match="above the limit"):
        load_image(big, max_zip_bytes=100_000)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(ImageLoadError, match="zip"):
        load_image(bad)


def test_dce_phases_4d(tmp_path, vol):
    rng = np.random.default_rng(3)
    arr = rng.normal(size=(4, *vol.SHAPE)).astype(np.float32)
    img = sitk.GetImageFromArray(arr, isVector=False)
    img.SetSpacing((*vol.SPACING, 1.0))
    img.SetOrigin((*vol.ORIGIN, 0.0))
    d4 = np.eye(4)
    d4[:3, :3] = vol.DIR_FLIP
    img.SetDirection(tuple(d4.ravel()))
    path = tmp_path / "DCE_phases.nii.gz"
    sitk.WriteImage(img, str(path))
    image = load_image(path, sequence="DCE_phases")
    assert image.array.shape == (4, *vol.SHAPE) and image.is_phases and image.ndim == 3
    assert_array_equal(image.array, arr)
    ref3 = vol.make_volume()
    assert_same_geometry(image, ref3)
    assert_array_equal(image.phase(2).array, arr[2])
    nii = to_nibabel(image)
    assert nii.shape == (7, 6, 5, 4)
    assert_array_equal(from_nibabel(nii).array, arr)
    assert_array_equal(load_image(save_image(image, tmp_path / "x.nii.gz")).array, arr)
    with pytest.raises(ImageLoadError, match="expected a 3-D image, got 4-D") as err:
        load_image(path, sequence="T1", case_id="C1")
    assert "DCE_phases.nii.gz" in str(err.value) and "case C1" in str(err.value)
    sitk.WriteImage(ref3, str(tmp_path / "t1.nii.gz"))
    with pytest.raises(ImageLoadError, match="expected a 4-D"):
        load_image(tmp_path / "t1.nii.gz", sequence="DCE_phases")


def test_png_grey_rgb_rgba_16bit(tmp_path):
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, size=(9, 11)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(tmp_path / "g.png"))
    us = load_image(tmp_path / "g.png", sequence="US")
    assert_array_equal(us.array, grey)
    assert us.spacing == (1.0, 1.0) and us.spacing_known is False and us.modality == "US"
    given = load_image(tmp_path / "g.png", sequence="US", spacing=(0.1, 0.12))
    assert given.spacing == (0.1, 0.12) and given.spacing_known
    g16 = rng.integers(0, 65536, size=(9, 11)).astype(np.uint16)
    sitk.WriteImage(sitk.GetImageFromArray(g16), str(tmp_path / "g16.png"))
    im16 = load_image(tmp_path / "g16.png")
    assert im16.array.dtype == np.uint16
    assert_array_equal(im16.array, g16)
    rgb = rng.integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    for name, arr in (("rgb.png", rgb), ("rgb.bmp", rgb),
                      ("rgba.png", np.concatenate([rgb, np.full((9, 11, 1), 7, np.uint8)], -1))):
        sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(tmp_path / name))
        im = load_image(tmp_path / name, sequence="US")
        assert im.array.shape == (9, 11)
        assert_allclose(im.array, expected, atol=1e-3)
    jpg = tmp_path / "us.jpg"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((16, 16, 3), (200, 100, 50), np.uint8),
                                           isVector=True), str(jpg))
    assert_allclose(load_image(jpg).array, 0.299 * 200 + 0.587 * 100 + 0.114 * 50, atol=3)


def test_dicom_2d_ultrasound(tmp_path):
    arr = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10)
    img = sitk.GetImageFromArray(arr)
    img.SetMetaData("0008|0060", "US")
    path = tmp_path / "US.dcm"
    sitk.WriteImage(img, str(path))
    bare = load_image(path, sequence="US")
    assert bare.ndim == 2 and not bare.spacing_known and bare.spacing == (1.0, 1.0)
    assert_array_equal(bare.array, arr)
    # ultrasound calibration: PhysicalDelta in cm
    ds = pydicom.dcmread(str(path))
    region = pydicom.Dataset()
    region.PhysicalUnitsXDirection = 3
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 0.008
    region.PhysicalDeltaY = 0.01
    ds.SequenceOfUltrasoundRegions = pydicom.Sequence([region])
    ds.save_as(str(path))
    us = load_image(path, sequence="US")
    assert us.spacing_known
    assert_allclose(us.spacing, (0.08, 0.1), atol=1e-9)
    assert_array_equal(us.array, arr)
    folder = tmp_path / "usdir"
    folder.mkdir()
    shutil.copy(path, folder / "x.dcm")
    assert_array_equal(load_image(folder, sequence="US").array, arr)
    # a 2-D MR DICOM carries PixelSpacing
    mr = sitk.GetImageFromArray(arr)
    mr.SetSpacing((0.3, 0.4))
    mr.SetMetaData("0008|0060", "MR")
    mr.SetMetaData("0008|0016", "1.2.840.10008.5.1.4.1.1.4")
    sitk.WriteImage(mr, str(tmp_path / "mr.dcm"))
    mr_image = load_image(tmp_path / "mr.dcm", expected_ndim=2)
    assert mr_image.spacing_known
    assert_allclose(mr_image.spacing, (0.3, 0.4), atol=1e-9)


def test_nibabel_2d_and_3d_single_slice_as_us(tmp_path):
    arr = np.arange(6 * 8, dtype=np.float32).reshape(1, 6, 8)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.2, 0.3, 1.0))
    sitk.WriteImage(img, str(tmp_path / "US.nii.gz"))
    us = load_image(tmp_path / "US.nii.gz", sequence="US")
    assert us.array.shape == (6, 8) and us.spacing == pytest.approx((0.2, 0.3))
    nii = to_nibabel(us)
    assert nii.shape == (8, 6, 1)
    assert_allclose(nii.affine @ [3, 2, 0, 1], [-0.6, -0.6, 0, 1])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".dcm"])
def test_text_renamed_and_empty_files(tmp_path, suffix):
    path = tmp_path / f"T1{suffix}"
    path.write_text("this is a text file, not an image\n" * 20)
    with pytest.raises(ImageLoadError) as err:
        load_image(path, case_id="C9")
    assert f"T1{suffix}" in str(err.value) and "case C9" in str(err.value)
    assert "Traceback" not in str(err.value)
    empty = tmp_path / f"E{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / f"missing{suffix}")


@pytest.mark.parametrize("suffix,cut", [(".nii.gz", 0.6), (".nii", 0.6), (".nrrd", 0.5),
                                        (".mha", 0.5)])
def test_truncated_files(tmp_path, vol, suffix, cut):
    path = tmp_path / f"full{suffix}"
    sitk.WriteImage(vol.make_volume(), str(path))
    data = path.read_bytes()
    bad = tmp_path / f"cut{suffix}"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ImageLoadError) as err:
        load_image(bad)
    assert f"cut{suffix}" in str(err.value)


def test_voxel_limit_is_checked_before_allocation(tmp_path, monkeypatch, vol):
    # An NRRD header declaring 2000^3 voxels (8e9: 32 GB as float) with a 4-byte file.
    (tmp_path / "huge.raw").write_bytes(b"\0\0\0\0")
    (tmp_path / "huge.nhdr").write_text(
        "NRRD0004\ntype: float\ndimension: 3\nsizes: 2000 2000 2000\n"
        "spacings: 1 1 1\nencoding: raw\nendian: little\ndata file: huge.raw\n")
    executed = []
    real_execute = sitk.ImageFileReader.Execute
    monkeypatch.setattr(sitk.ImageFileReader, "Execute",
                        lambda self: executed.append(1) or real_execute(self))
    with pytest.raises(InputLimitError, match="8,000,000,000 voxels") as err:
        load_image(tmp_path / "huge.nhdr", case_id="C3")
    assert "huge.nhdr" in str(err.value)
    assert executed == []
    # a NIfTI whose header declares more than the limit given
    path = tmp_path / "T1.nii.gz"
    sitk.WriteImage(vol.make_volume(), str(path))
    with pytest.raises(InputLimitError):
        load_image(path, max_voxels=209)
    assert executed == []
    assert load_image(path, max_voxels=210).array.size == 210


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_nan_voxels_refused(tmp_path, vol, suffix):
    img = vol.make_volume()
    arr = sitk.GetArrayFromImage(img)
    arr[2, 3, 4] = np.nan
    arr[1, 1, 1] = np.inf
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    sitk.WriteImage(bad, str(tmp_path / f"nan{suffix}"))
    with pytest.raises(ImageLoadError, match="2 NaN or infinite") as err:
        load_image(tmp_path / f"nan{suffix}")
    assert f"nan{suffix}" in str(err.value)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "T1.tiff.txt"
    path.write_text("x")
    with pytest.raises(ImageLoadError, match="unsupported file type"):
        load_image(path)


def test_image_validation_and_grid():
    with pytest.raises(ValueError):
        Image(np.zeros((2, 3, 4)), (1, 1), (0, 0, 0), np.eye(3).ravel())
    with pytest.raises(ValueError):
        Image(np.zeros((2, 3, 4)), (1, 1, 0), (0, 0, 0), np.eye(3).ravel())
    a = Image(np.zeros((2, 3, 4)), (1, 1, 2), (0, 0, 0), np.eye(3).ravel())
    b = a.replace(origin=(0, 0, 0.0005))
    assert a.same_grid(b)
    c = a.replace(origin=(0, 0, 0.01), spacing=(1, 1, 2.1))
    diffs = a.grid_differences(c)
    assert any(d.startswith("origin") for d in diffs) and any(d.startswith("spacing") for d in diffs)
    assert a.size == (4, 3, 2)
    assert_allclose(a.voxel_corners().min(0), [-0.5, -0.5, -1.0])


def test_io_has_no_hand_written_parsers():
    # all format work goes through SimpleITK / nibabel / pydicom
    src = Path(io.__file__).read_text(encoding="utf-8")
    assert "struct.unpack" not in src and "np.fromfile" not in src


def test_rgb_dicom_ultrasound_and_header_info(tmp_path):
    rgb = np.random.default_rng(8).integers(0, 256, (12, 10, 3)).astype(np.uint8)
    img = sitk.GetImageFromArray(rgb, isVector=True)
    img.SetMetaData("0008|0060", "US")
    sitk.WriteImage(img, str(tmp_path / "US.dcm"))
    us = load_image(tmp_path / "US.dcm", sequence="US")
    assert us.array.shape == (12, 10) and us.meta["colour"] == "RGB collapsed to grey"
    assert_allclose(us.array, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-4)
    info = io.read_image_info(tmp_path / "US.dcm")
    assert info.size == (10, 12, 1) and info.n_components == 3 and info.n_voxels == 120


def test_list_series_in_zip(tmp_path, vol):
    a = vol.make_volume(direction=vol.DIR_DICOM, dtype=np.int16, seed=1)
    files = vol.write_dicom_series(a, tmp_path / "a", uid="1.2.3.100")
    files += vol.write_dicom_series(a, tmp_path / "b", uid="1.2.3.200")
    zpath = tmp_path / "two.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in files:
            zf.write(f, f"{f.parent.name}/{f.name}")
    infos = list_dicom_series(zpath)
    assert [(s.uid, s.n_files) for s in sorted(infos, key=lambda s: s.uid)] == \
        [("1.2.3.100", 5), ("1.2.3.200", 5)]
    assert all(f.startswith("b/") for f in
               next(s for s in infos if s.uid == "1.2.3.200").files)
    with pytest.raises(ImageLoadError, match="2 DICOM series found"):
        load_image(zpath)
    assert_array_equal(load_image(zpath, series_uid="1.2.3.100").array, sitk.GetArrayFromImage(a))


def test_dicom_without_preamble_and_single_timepoint_4d(tmp_path, vol):
    ref = vol.make_volume(direction=vol.DIR_DICOM, dtype=np.int16)
    files = vol.write_dicom_series(ref, tmp_path / "raw", uid="1.2.3.4")
    for f in files:  # drop the 128-byte preamble and the "DICM" marker
        f.write_bytes(f.read_bytes()[132:])
    image = load_image(tmp_path / "raw")
    assert_array_equal(image.array, sitk.GetArrayFromImage(ref))
    assert_same_geometry(image, ref)
    one = sitk.GetImageFromArray(sitk.GetArrayFromImage(ref)[None], isVector=False)
    path = tmp_path / "t1_4d.nii.gz"
    sitk.WriteImage(one, str(path))
    assert load_image(path, sequence="T1").array.shape == vol.SHAPE


def test_extract_zip_keeps_its_folder_and_refuses_what_extracted_zip_refuses(tmp_path):
    """The persistent extractor (cohort uploads) shares every guard of the DICOM-zip loader."""
    import zipfile

    from her2core.errors import ImageLoadError, InputLimitError
    from her2core.imaging.io import extract_zip

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("cohort/cohort.csv", "case_id\nA1\n")
    out = extract_zip(good, tmp_path / "out")
    assert (out / "cohort" / "cohort.csv").read_text(encoding="utf-8") == "case_id\nA1\n"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escape.csv", "x")
    with pytest.raises(ImageLoadError, match="outside the archive"):
        extract_zip(bad, tmp_path / "out2")
    assert not (tmp_path / "escape.csv").exists()
    with pytest.raises(InputLimitError):
        extract_zip(good, tmp_path / "out3", max_bytes=5)
