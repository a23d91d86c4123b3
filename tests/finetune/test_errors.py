"""Bad input: one-line messages naming the case or file, raised before any training."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from her2core.cohort import read_cohort
from her2core.errors import CohortError, Her2Error, MaskError
from her2core.finetune import FinetuneSettings, finetune
from her2core.finetune import data as D
from her2core.finetune.nets import arch_info
from her2core.imaging.image import Image

from .conftest import WHERE, dce_settings, us_settings


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_unknown_architecture(ft_cohort, tmp_path):
    with pytest.raises(Her2Error) as err:
        finetune(ft_cohort, us_settings(arch="resnet_nope"), tmp_path / "o")
    assert _one_line(err).startswith("unknown architecture 'resnet_nope'")
    assert not (tmp_path / "o").exists()


def test_3d_network_on_ultrasound(ft_cohort, tmp_path):
    with pytest.raises(Her2Error) as err:
        finetune(ft_cohort, us_settings(arch="resnet3d18"), tmp_path / "o")
    assert "3-D network resnet3d18 needs a 3-D image; the ultrasound image is 2-D" in _one_line(err)


def test_folds_that_cannot_be_stratified(ft_cohort, tmp_path):
    # centre A has 2 HER2-negative and 4 positive cases
    with pytest.raises(CohortError) as err:
        finetune(ft_cohort, us_settings(folds=3), tmp_path / "o", where=WHERE)
    assert _one_line(err).startswith(
        "cannot stratify 3 folds for her2: 4 positive and 2 negative training cases (only 2 "
        "negative)")
    assert "--folds 2 or fewer" in str(err.value)
    assert not (tmp_path / "o").exists()


def test_weights_file_of_another_architecture(ft_cohort, tmp_path):
    import timm
    from safetensors.torch import save_file
    f = tmp_path / "resnet34.safetensors"
    save_file(timm.create_model("resnet34", pretrained=False, num_classes=0).state_dict(), str(f))
    s = us_settings(random_init=False, weights=str(f))
    with pytest.raises(Her2Error) as err:
        finetune(ft_cohort, s, tmp_path / "o", where=WHERE)
    text = _one_line(err)
    assert text.startswith(f"file {f}: weights file is for another architecture than resnet18")
    f2 = tmp_path / "vit.safetensors"
    save_file(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
              .state_dict(), str(f2))
    with pytest.raises(Her2Error, match=r"does not fit backbone resnet18"):
        finetune(ft_cohort, s.updated(weights=str(f2)), tmp_path / "o", where=WHERE)


def test_missing_weights_are_never_downloaded(ft_cohort, tmp_path, monkeypatch):
    import huggingface_hub

    def no(*a, **k):  # pragma: no cover - would be a bug
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no)
    with pytest.raises(Her2Error, match="no pretrained weights found for backbone resnet18"):
        finetune(ft_cohort, us_settings(random_init=False), tmp_path / "o", where=WHERE)


def test_cases_with_a_missing_or_tiny_roi_are_named(ft_cohort, tmp_path):
    from PIL import Image as PILImage
    root = tmp_path / "cohort"
    shutil.copytree(ft_cohort, root)
    (root / "cases" / "syn-0002" / "US_mask.png").unlink()
    tiny = np.zeros((64, 64), np.uint8)
    tiny[20:26, 30:32] = 255                      # 2 x 6 px: 12 pixels, narrower than 4
    PILImage.fromarray(tiny).save(root / "cases" / "syn-0004" / "US_mask.png")
    coh = read_cohort(root)
    s = us_settings()
    items = [(c, coh.files(c)) for c in ("syn-0000", "syn-0002", "syn-0004")]
    inputs, errors = D.decode_cases(items, s, arch_info("resnet18"))
    assert list(inputs) == ["syn-0000"] and tuple(inputs["syn-0000"].shape) == (1, 32, 32)
    msgs = {e.case_id: str(e) for e in errors}
    assert msgs["syn-0002"].startswith("case syn-0002")
    assert "no US_mask for the US image" in msgs["syn-0002"]
    assert msgs["syn-0004"].startswith("case syn-0004, file ")
    assert msgs["syn-0004"].split(", file ")[1].split(":")[0].endswith("syn-0004/US_mask.png")
    assert "the ROI is 2 x 6 px in-plane, smaller than the 4 px the crop needs" in msgs["syn-0004"]
    assert all("\n" not in m for m in msgs.values())


def test_image_of_the_wrong_dimensionality():
    img = Image(np.random.default_rng(0).random((40, 40)).astype(np.float32), (1.0, 1.0),
                (0.0, 0.0), (1.0, 0.0, 0.0, 1.0), sequence="DCE", source="cases/x/DCE.png")
    m = np.zeros((40, 40), np.uint8)
    m[10:20, 10:20] = 1
    mask = img.with_array(m)
    with pytest.raises(Her2Error) as err:
        D.prepare_input(img, mask, dce_settings(), arch_info("resnet3d18"), case_id="x")
    assert _one_line(err) == ("case x, file cases/x/DCE.png: the 3-D network resnet3d18 needs a "
                              "3-D image, this one is 2-D (use a 2-D network for ultrasound)")
    vol = Image(np.zeros((4, 40, 40), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(MaskError, match="the mask is 2-D but the image is 3-D"):
        D.prepare_input(vol, mask, dce_settings(), arch_info("resnet3d18"), case_id="x")


def test_bad_settings_are_one_line():
    with pytest.raises(Her2Error, match="unknown sequence 'PET'"):
        FinetuneSettings(sequence="PET")
    with pytest.raises(Her2Error, match="at least 2 folds"):
        FinetuneSettings(folds=1)
    with pytest.raises(Her2Error, match="random_init and a weights file both given"):
        FinetuneSettings(random_init=True, weights="x.safetensors")
    assert FinetuneSettings.preset("paper001-us").lr == 2e-5
    assert FinetuneSettings.preset("paper001-dce", epochs=2).to_dict()["arch"] == "resnet3d18"


def test_a_finished_folder_is_not_overwritten(us_run, ft_cohort):
    with pytest.raises(Her2Error, match="already holds a fine-tuned ensemble"):
        finetune(ft_cohort, us_settings(), us_run, where=WHERE)
