"""Paper presets say what the papers say: paper 003 fine-tunes ResNet101 on ultrasound with
random crops and flips only (issue 13: the preset named DCE)."""
from __future__ import annotations

import pytest
import torch

from her2core.errors import Her2Error
from her2core.finetune import FinetuneSettings
from her2core.finetune.data import Augment2D, AugmentCropFlip, make_augment


def test_paper003_preset_is_ultrasound_resnet101_with_its_augmentation():
    s = FinetuneSettings.preset("paper003")
    assert (s.sequence, s.arch, s.margin_px, s.slice_mode) == ("US", "resnet101", 10, "largest")
    assert s.augment and s.augmentation == "crop_flip" and s.mixup == 0.0
    note = dict(__import__("her2core.finetune.settings", fromlist=["PRESETS"]).PRESETS)[
        "paper003"]["note"]
    assert "ultrasound" in note and "not stated" in note.lower()
    # the recipe's network and the preset agree on what it reads
    from her2core.models.recipes import load_recipe
    net = load_recipe("003")["networks"][0]
    assert (net["sequence"], net["arch"], net["preset"]) == ("US", "resnet101", "paper003")


def test_paper003_resnet101_has_2048_penultimate_features():
    """PCA 64 of the 2048 penultimate features, as the paper's DLR."""
    import timm
    m = timm.create_model("resnet101", pretrained=False, num_classes=0)
    assert m.num_features == 2048


def test_crop_flip_augmentation_crops_and_flips_only():
    class Info:
        kind = "2d"
    aug = make_augment(FinetuneSettings.preset("paper003", size=32), Info())
    assert isinstance(aug, AugmentCropFlip)
    x = torch.arange(32, dtype=torch.float32).repeat(3, 32, 1)      # a ramp along x
    outs = [aug(x, seed) for seed in range(40)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert torch.equal(aug(x, 7), aug(x, 7))                        # seeded
    # flips: the ramp runs left to right or right to left; values stay inside the input's
    rising = [bool(o[0, 16, -1] > o[0, 16, 0]) for o in outs]
    assert any(rising) and not all(rising)
    assert all(float(o.min()) >= -1e-4 and float(o.max()) <= 31 + 1e-4 for o in outs)
    # a crop: some outputs span less than the whole ramp (80-100 % of the side)
    spans = [float(o[0, 16].max() - o[0, 16].min()) for o in outs]
    assert min(spans) < 0.95 * 31 and max(spans) > 0.97 * 31
    # no intensity change: a constant picture stays the same constant
    c = torch.full((3, 32, 32), 0.25)
    assert all(torch.allclose(aug(c, s), c) for s in range(5))
    # the default set is unchanged
    assert isinstance(make_augment(FinetuneSettings(size=32), Info()), Augment2D)


def test_crop_flip_is_refused_for_the_3d_network():
    with pytest.raises(Her2Error, match="2-D only"):
        FinetuneSettings(sequence="DCE", arch="resnet3d18", augmentation="crop_flip")
    with pytest.raises(Her2Error, match="augmentation"):
        FinetuneSettings(augmentation="mixup")
