"""Bounded fuzzing of the loaders (hypothesis): any bytes give a result or a her2core error.

Inputs are valid files with random byte-level mutations (flips, truncations,
insertions) and wholly random bytes. The only acceptable outcomes are a loaded
object or a Her2Error subclass whose message names the file; anything else is a
crash, and hypothesis shrinks it to a minimal input. A crashing input found here
is kept as an explicit @example so it stays a regression test.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from her2core.cohort import read_cohort
from her2core.errors import Her2Error
from her2core.imaging.image import Image
from her2core.imaging.io import load_image
from her2core.imaging.mask import load_mask

FUZZ = settings(max_examples=int(os.environ.get("HER2_FUZZ_EXAMPLES", "150")), deadline=None,
                derandomize=os.environ.get("HER2_FUZZ_RANDOM") is None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _nifti_bytes(mask: bool = False) -> bytes:
    arr = (np.arange(6 * 5 * 4).reshape(4, 5, 6) % 7).astype(np.uint8 if mask else np.int16)
    if mask:
        arr = (arr > 3).astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.9, 2.5))
    img.SetOrigin((10.0, -4.0, 3.0))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.nii"
        sitk.WriteImage(img, str(p))
        return p.read_bytes()


def _png_bytes() -> bytes:
    from PIL import Image as PILImage
    buf = io.BytesIO()
    PILImage.fromarray((np.arange(24 * 20) % 255).reshape(20, 24).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


NIFTI = _nifti_bytes()
MASK = _nifti_bytes(mask=True)
PNG = _png_bytes()
CSV = ("case_id,her2,her2_ihc,center,age,er,ki67,enhancement_curve\n"
       "a1,1,3+,A,55,0,40,washout\n"
       "a2,0,1+,B,61,1,,plateau\n").encode()


@st.composite
def mutated(draw, base: bytes):
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[pos:pos + 4] = b"\0\0\0\0"
    return bytes(data)


def _assert_clean(fn, path: Path):
    try:
        fn()
    except Her2Error as err:
        assert path.name in str(err), f"error does not name the file: {err}"


@FUZZ
@given(data=st.one_of(mutated(NIFTI), st.binary(max_size=600)))
@example(data=NIFTI[:348])
@example(data=b"")
def test_fuzz_nifti_loader(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("nii") / "T1.nii"
    p.write_bytes(data)
    _assert_clean(lambda: load_image(p, sequence="T1"), p)


@FUZZ
@given(data=st.one_of(mutated(PNG), st.binary(max_size=300)))
def test_fuzz_png_loader(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("png") / "US.png"
    p.write_bytes(data)
    _assert_clean(lambda: load_image(p, sequence="US"), p)


@FUZZ
@given(data=mutated(MASK))
def test_fuzz_mask_loader(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("mask")
    ref_path = d / "DCE.nii"
    ref_path.write_bytes(NIFTI)
    ref = load_image(ref_path, sequence="DCE")
    p = d / "mask.nii"
    p.write_bytes(data)
    _assert_clean(lambda: load_mask(p, ref), p)


@st.composite
def zips(draw):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from(["s.dcm", "../x.dcm", "/abs.dcm", "a/b/c.dcm",
                                         "..\\win.dcm", f"slice{i}.dcm", "DICOMDIR"]))
            try:
                z.writestr(f"{i}_{name}" if not name.startswith(("/", "..")) else name,
                           draw(st.binary(max_size=200)))
            except (ValueError, OSError):
                pass
    raw = buf.getvalue()
    return draw(st.one_of(st.just(raw), mutated(raw)))


def _zip_with_flags(flag_bits: int = 0, method: int = 0, version: int = 20) -> bytes:
    """A one-member zip whose central directory claims features zipfile cannot read."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("s.dcm", b"x" * 32)
    raw = bytearray(buf.getvalue())
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 6:cd + 8] = version.to_bytes(2, "little")
    raw[cd + 8:cd + 10] = flag_bits.to_bytes(2, "little")
    raw[cd + 10:cd + 12] = method.to_bytes(2, "little")
    return bytes(raw)


@FUZZ
@given(data=zips())
@example(data=_zip_with_flags(flag_bits=0x40))      # strong encryption: NotImplementedError once
@example(data=_zip_with_flags(flag_bits=0x20))      # compressed patched data
@example(data=_zip_with_flags(method=99))           # unsupported compression method
@example(data=_zip_with_flags(version=84))          # "zip file version 8.4"
def test_fuzz_dicom_zip_loader(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("zip") / "DCE.zip"
    p.write_bytes(data)
    _assert_clean(lambda: load_image(p, sequence="DCE"), p)


@FUZZ
@given(data=st.one_of(mutated(CSV), st.binary(max_size=300),
                      st.text(max_size=300).map(lambda t: t.encode("utf-8"))))
@example(data=b"\xef\xbb\xbf" + CSV)
@example(data=b"case_id\n\n\n")
def test_fuzz_cohort_csv(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("cohort")
    (root / "cohort.csv").write_bytes(data)
    _assert_clean(lambda: read_cohort(root), root / "cohort.csv")


def test_fuzz_inputs_are_real_files():
    """The seeds themselves load: the fuzzers start from valid inputs."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "T1.nii"
        p.write_bytes(NIFTI)
        img = load_image(p, sequence="T1")
        assert isinstance(img, Image) and img.array.shape == (4, 5, 6)
        np.testing.assert_allclose(img.spacing, (0.7, 0.9, 2.5), rtol=1e-6)
        (Path(d) / "cohort.csv").write_bytes(CSV)
        assert read_cohort(d).case_ids == ["a1", "a2"]
