"""`python -m her2core weights list|import|download` and fine-tuning from imported weights."""
from __future__ import annotations

import json

import pytest
import torch
from numpy.testing import assert_allclose

from her2core import cli
from her2core.errors import Her2Error
from her2core.features import weights as W
from her2core.features.weights import file_sha256

from .conftest import WHERE, us_settings


@pytest.fixture(scope="module")
def r18_pth(tmp_path_factory):
    """A torchvision-style resnet18 checkpoint with its 1000-class head (a .pth, plain tensors)."""
    import timm
    torch.manual_seed(5)
    m = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    p = tmp_path_factory.mktemp("w") / "resnet18_in1k.pth"
    torch.save(m.state_dict(), p)
    return p, m


def test_import_then_list_then_finetune_from_it(r18_pth, ft_cohort, tmp_path, capsys):
    src, model = r18_pth
    wd = tmp_path / "weights"
    assert cli.main(["weights", "import", str(src), "--arch", "resnet18",
                     "--weights-dir", str(wd)]) == 0
    stored = wd / "resnet18.safetensors"
    sha = file_sha256(stored)
    assert f"sha256:{sha}" in capsys.readouterr().out
    rec = json.loads((wd / "weights.json").read_text())["resnet18"]
    assert rec["sha256"] == sha and rec["source_sha256"] == file_sha256(src)
    assert rec["source_file"] == "resnet18_in1k.pth"
    # the stored tensors are the source's (classifier dropped)
    from safetensors.torch import load_file
    st = load_file(str(stored))
    assert "fc.weight" not in st
    assert_allclose(st["layer4.1.conv2.weight"].numpy(),
                    model.state_dict()["layer4.1.conv2.weight"].numpy(), atol=0)
    # listed with its checksum
    e = W.list_weights(["resnet18"], weights_dir=wd)[0]
    assert (e.found, e.origin, e.sha256, e.path) == (True, "weights-dir", sha, str(stored))
    assert cli.main(["weights", "list", "resnet18", "resnet3d18", "--weights-dir", str(wd)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["resnet18", "2d", "weights-dir"]
    assert f"sha256:{sha[:16]}" in out[0] and "not" not in out[0]
    assert out[1].startswith("resnet3d18") and "weights-dir only" in out[1]
    # a fine-tune found them and records their identity
    from her2core.finetune import finetune
    res = finetune(ft_cohort, us_settings(random_init=False, weights_dir=str(wd), epochs=1),
                   tmp_path / "ft", where=WHERE)
    m = res.manifest
    assert m["weights"]["identity"] == "sha256:" + sha and m["random_init"] is False
    assert m["warning"] is None and res.warning is None


def test_import_refuses_another_architecture(r18_pth, tmp_path, capsys):
    src, _ = r18_pth
    wd = tmp_path / "weights"
    assert cli.main(["weights", "import", str(src), "--arch", "resnet50",
                     "--weights-dir", str(wd)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: file {src}: weights file does not fit backbone resnet50")
    assert "\n" not in err and not (wd / "resnet50.safetensors").exists()
    with pytest.raises(Her2Error, match="no weights folder chosen"):
        W.import_weights(src, "resnet18")
    with pytest.raises(Her2Error, match="weights file not found"):
        W.import_weights(tmp_path / "none.pth", "resnet18", tmp_path)


def test_download_goes_through_the_hub_only_when_asked(r18_pth, tmp_path, monkeypatch):
    """No network here: the hub call is replaced, and must be the only network access."""
    import huggingface_hub
    import huggingface_hub.constants as hc
    from safetensors.torch import save_file
    _, model = r18_pth
    calls = []
    offline_before = hc.HF_HUB_OFFLINE

    def fake(repo_id, filename, cache_dir=None, **kw):
        calls.append((repo_id, filename, cache_dir, hc.HF_HUB_OFFLINE))
        p = tmp_path / "hub" / "model.safetensors"
        p.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(p))
        return str(p)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    e = W.download_weights("resnet18", weights_dir=tmp_path / "wd")
    assert calls == [("timm/resnet18.a1_in1k", "model.safetensors", str(W.hf_hub_cache()), False)]
    assert hc.HF_HUB_OFFLINE == offline_before
    assert e.path == str(tmp_path / "wd" / "resnet18.safetensors") and e.found
    with pytest.raises(Her2Error, match="no download source known for resnet3d18"):
        W.download_weights("resnet3d18")
