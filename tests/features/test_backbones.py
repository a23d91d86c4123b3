"""Backbone registry, local weights (file / folder / HF and torch caches), random-init rules."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from her2core.errors import Her2Error
from her2core.features import backbones as B
from her2core.features import weights as W
from her2core.features.backbones import create_backbone, get_spec, random_init_warning


@pytest.fixture(autouse=True)
def _empty_caches(tmp_path, monkeypatch):
    """No user's real caches: empty HF / torch caches, no HER2_WEIGHTS_DIR."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HER2_WEIGHTS_DIR", raising=False)


def _x(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g)


@pytest.mark.parametrize("name,size", [
    ("resnet18", 64), ("resnet50", 64), ("efficientnet_b0", 64), ("vit_small_patch16_224", 224),
])
def test_feature_dimension_is_the_papers(name, size):
    bb = create_backbone(name, "random-init", input_px=None if size == 224 else size)
    out = bb.embed(_x(1, size))
    assert out.shape == (1, get_spec(name).dim) == (1, bb.dim)
    assert {"resnet18": 512, "resnet50": 2048, "efficientnet_b0": 1280,
            "vit_small_patch16_224": 384}[name] == bb.dim
    assert np.isfinite(out.numpy()).all()


def test_every_registered_2d_dimension_on_the_meta_device():
    """Forward shapes of all registered timm backbones (no memory, no arithmetic).

    VGG16/19 with num_classes=0 give the 4096-d fc7 pre-logits (timm keeps
    fc6/fc7 as a conv block), not the 512 of model.num_features.
    """
    import timm
    for name, spec in B.REGISTRY.items():
        if spec.kind != "2d":
            continue
        with torch.device("meta"):
            m = timm.create_model(name, pretrained=False, num_classes=0).eval()
            out = m(torch.empty(1, 3, 224, 224))
        assert tuple(out.shape) == (1, spec.dim), name
    assert B.REGISTRY["vgg16"].dim == B.REGISTRY["vgg19"].dim == 4096


def test_resnet3d18_gives_512_on_a_96_cube():
    bb = create_backbone("resnet3d18", "random-init", seed=3)
    x = torch.randn(1, 1, 96, 96, 96, generator=torch.Generator().manual_seed(0))
    out = bb.embed(x)
    assert out.shape == (1, 512)
    assert bb.input_size == (1, 96, 96, 96)
    n_conv = sum(isinstance(m, torch.nn.Conv3d) for m in bb.model.modules())
    assert n_conv == 1 + 16 + 3  # stem, 8 blocks x 2, 3 projection shortcuts


def test_unknown_name_lists_known_ones():
    with pytest.raises(Her2Error) as ei:
        get_spec("resnet5O")
    msg = str(ei.value)
    assert "resnet5O" in msg and "resnet50" in msg and "vit_small_patch16_224" in msg
    with pytest.raises(Her2Error, match="timm has no model"):
        get_spec("timm:not_a_model")
    assert get_spec("timm:resnet10t").dim == -1
    assert get_spec("resnet50.a1_in1k").dim == 2048


def test_missing_weights_refused_unless_random_init_is_explicit(tmp_path):
    with pytest.raises(Her2Error) as ei:
        create_backbone("resnet18")
    msg = str(ei.value)
    assert "no pretrained weights found for backbone resnet18" in msg
    assert "random-init" in msg and "resnet18.safetensors" in msg
    with pytest.raises(Her2Error, match="not found"):
        create_backbone("resnet18", str(tmp_path / "nope.safetensors"))
    bb = create_backbone("resnet18", "random-init", seed=7, input_px=64)
    assert bb.weights_identity == "random-init" and bb.weights.seed == 7
    again = create_backbone("resnet18", "random-init", seed=7, input_px=64)
    other = create_backbone("resnet18", "random-init", seed=8, input_px=64)
    x = _x()
    assert_allclose(bb.embed(x).numpy(), again.embed(x).numpy(), rtol=0, atol=0)
    assert not np.allclose(bb.embed(x).numpy(), other.embed(x).numpy())
    assert "resnet18" in random_init_warning({"resnet18": "random-init", "vgg16": "sha256:ab"})
    assert random_init_warning({"vgg16": "sha256:ab"}) is None


def test_safetensors_round_trip_file_folder_and_weights_dir(tmp_path):
    src = create_backbone("resnet18", "random-init", seed=1, input_px=64)
    f = W.save_state_dict(src.model, tmp_path / "w" / "resnet18.safetensors")
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    x = _x()
    ref = src.embed(x).numpy()
    for spec, kw in [(str(f), {}), (str(f.parent), {}), ("auto", {"weights_dir": f.parent})]:
        bb = create_backbone("resnet18", spec, seed=99, input_px=64, **kw)
        assert bb.weights_identity == f"sha256:{sha}"
        assert_allclose(bb.embed(x).numpy(), ref, rtol=0, atol=0)


def test_pth_round_trip_and_pickled_objects_refused(tmp_path):
    src = create_backbone("resnet18", "random-init", seed=2, input_px=64)
    p = tmp_path / "r18.pth"
    # a training checkpoint: nested state_dict, DataParallel prefix, classifier head
    sd = {f"module.{k}": v for k, v in src.model.state_dict().items()}
    sd["module.fc.weight"] = torch.zeros(1000, 512)
    sd["module.fc.bias"] = torch.zeros(1000)
    torch.save({"state_dict": sd, "epoch": 3}, p)
    bb = create_backbone("resnet18", str(p), input_px=64)
    x = _x()
    assert_allclose(bb.embed(x).numpy(), src.embed(x).numpy(), rtol=0, atol=0)
    bad = tmp_path / "pickled.pth"
    torch.save({"model": torch.nn.Linear(2, 2), "note": object.__new__(_Opaque)}, bad)
    with pytest.raises(Her2Error, match="cannot read weights file"):
        create_backbone("resnet18", str(bad))


class _Opaque:
    pass


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    src = create_backbone("resnet18", "random-init")
    f = W.save_state_dict(src.model, tmp_path / "r18.safetensors")
    with pytest.raises(Her2Error) as ei:
        create_backbone("efficientnet_b0", str(f))
    assert "does not fit backbone efficientnet_b0" in str(ei.value)
    assert str(f) in str(ei.value)


def test_found_in_hf_and_torch_hub_caches(tmp_path, monkeypatch):
    src = create_backbone("resnet18", "random-init", seed=4, input_px=64)
    x = _x()
    ref = src.embed(x).numpy()
    # Hugging Face cache layout that timm fills: models--timm--<arch>.<tag>
    repo = tmp_path / "hf" / "models--timm--resnet18.a1_in1k"
    W.save_state_dict(src.model, repo / "snapshots" / "abc123" / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    bb = create_backbone("resnet18", input_px=64)
    assert bb.weights.origin == "hf-cache"
    assert_allclose(bb.embed(x).numpy(), ref, rtol=0, atol=0)
    # torch hub cache: the file named as timm's URL, as a plain .pth state_dict
    import shutil
    shutil.rmtree(repo)
    url = bb.model.pretrained_cfg["url"]
    dst = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    dst.parent.mkdir(parents=True)
    torch.save(src.model.state_dict(), dst)
    bb2 = create_backbone("resnet18", input_px=64)
    assert bb2.weights.origin == "torch-cache" and bb2.weights.path == str(dst)
    assert_allclose(bb2.embed(x).numpy(), ref, rtol=0, atol=0)
    import os
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_normalisation_is_the_backbones_own():
    bb = create_backbone("vit_small_patch16_224", "random-init", input_px=32)
    assert bb.input_size == (3, 224, 224)  # ViT keeps its patch grid
    assert bb.mean == (0.5, 0.5, 0.5) and bb.std == (0.5, 0.5, 0.5)
    x = torch.full((1, 1, 224, 224), 0.75)
    assert_allclose(bb.prepare(x).numpy(), 0.5, atol=1e-6)
    r = create_backbone("resnet18", "random-init")
    assert_allclose(r.prepare(x)[0, :, 0, 0].numpy(),
                    (0.75 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
                    rtol=1e-6)
