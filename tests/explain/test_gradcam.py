"""Grad-CAM: target layers, D-score head, hook hygiene, sanity checks (Adebayo 2018), 3-D."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose
from scipy import ndimage, stats
from torch import nn

timm = pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

from her2core.explain.gradcam import (  # noqa: E402
    METHODS, GradCAM3D, ScoreHead, compute_cam, gradcam_3d, leftover_hooks,
    linearize_score, score_head_from_model, target_layers_for)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the CI machine has 2 shared cores: more threads than cores makes small convs crawl
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(name, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=0, **kw).eval()


# ------------------------------------------------------------------ target layers
@pytest.mark.parametrize("name, expected", [
    ("resnet18", "layer4[-1]"),
    ("vgg11", "features[19]"),
    ("efficientnet_b0", "bn2"),
    ("convnextv2_atto", "stages[-1]"),
    ("densenet121", "features.norm5"),
])
def test_target_layer_per_family(name, expected):
    m = _model(name)
    layers, reshape, desc = target_layers_for(ScoreHead(m, [0], [1.0], 0.0))
    assert desc.startswith(expected) and reshape is None
    named = {id(mod): n for n, mod in m.named_modules()}
    want = {"resnet18": "layer4.1", "vgg11": "features.19", "efficientnet_b0": "bn2",
            "convnextv2_atto": "stages.3", "densenet121": "features.norm5"}[name]
    assert named[id(layers[0])] == want


@pytest.mark.parametrize("name, prefix", [("vit_tiny_patch16_224", 1),
                                          ("vit_small_patch14_reg4_dinov2", 5)])
def test_vit_reshape_drops_prefix_tokens(name, prefix):
    m = _model(name, img_size=56 if "dinov2" in name else 64)
    layers, reshape, desc = target_layers_for(m)
    assert desc.startswith("blocks[-1].norm1") and layers[0] is m.blocks[-1].norm1
    assert m.num_prefix_tokens == prefix
    grid = tuple(m.patch_embed.grid_size)
    tokens = torch.arange(prefix + grid[0] * grid[1], dtype=torch.float32)
    t = tokens[None, :, None].repeat(1, 1, 3)            # (1, N, C), value = token index
    out = reshape(t)
    assert out.shape == (1, 3, grid[0], grid[1])
    # the first patch token (index `prefix`) lands top-left, row-major after it
    assert_allclose(out[0, 0].numpy(), (prefix + np.arange(grid[0] * grid[1])).reshape(grid))


# ------------------------------------------------------------------ score head
def test_score_head_reproduces_the_fitted_dscore():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    bb = _model("resnet18")
    torch.manual_seed(1)
    imgs = torch.randn(24, 3, 32, 32)
    with torch.no_grad():
        feats = bb(imgs).numpy().astype(float)
    cols = [f"DCE__resnet18__f{i:04d}" for i in range(feats.shape[1])]
    X = pd.DataFrame(feats, columns=cols)
    y = (feats[:, 3] > np.median(feats[:, 3])).astype(int)
    pipe = make_pipeline(StandardScaler(),
                         LogisticRegression(l1_ratio=1.0, solver="liblinear", C=0.5)).fit(X, y)
    sc, lr = pipe[0], pipe[-1]
    sel = np.flatnonzero(lr.coef_[0])
    assert sel.size > 0
    head = ScoreHead(bb, sel, lr.coef_[0, sel], lr.intercept_[0], sc.mean_[sel], sc.scale_[sel])
    with torch.no_grad():
        out = head(imgs[:5])[:, 0].numpy()
    assert_allclose(out, pipe.decision_function(X.iloc[:5]), rtol=1e-4, atol=1e-4)
    # the same head read off the fitted model, generically
    w, b = linearize_score(pipe, cols, X.iloc[[0]])
    assert_allclose(X.iloc[:5].to_numpy() @ w + b, pipe.decision_function(X.iloc[:5]), atol=1e-9)
    head2 = score_head_from_model(bb, pipe, cols, X.iloc[[0]])
    neg = score_head_from_model(bb, pipe, cols, X.iloc[[0]], sign=-1)   # "what lowers it"
    with torch.no_grad():
        assert_allclose(head2(imgs[:5])[:, 0].numpy(), out, rtol=1e-4, atol=1e-4)
        assert_allclose(neg(imgs[:5])[:, 0].numpy(), -out, rtol=1e-4, atol=1e-4)


def test_score_head_for_one_sequence_keeps_others_fixed():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    cols = [f"{s}__resnet18__f{i:04d}" for s in ("T1", "T2") for i in range(4)]
    X = pd.DataFrame(rng.normal(size=(30, 8)), columns=cols)
    lr = LogisticRegression().fit(X, (X.iloc[:, 0] + X.iloc[:, 5] > 0).astype(int))

    class Fixed(nn.Module):  # "backbone" whose features are its input
        def forward(self, x):
            return x

    head = score_head_from_model(Fixed(), lr, cols, X.iloc[[2]], sequence_columns=cols[4:])
    t2 = torch.tensor(X.iloc[[2], 4:].to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        assert_allclose(head(t2)[0, 0].item(), lr.decision_function(X.iloc[[2]])[0], atol=1e-5)


# ------------------------------------------------------------------ hooks
@pytest.fixture(scope="module")
def shared_resnet():
    bb = _model("resnet18")
    bb.requires_grad_(False)  # a frozen, cached feature extractor
    return ScoreHead(bb, [1, 7, 30], [0.7, -0.4, 1.1], 0.2)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_leaves_no_hooks(shared_resnet, method):
    # ScoreCAM runs one forward pass per channel (512 for ResNet18): a small CNN there
    model = shared_resnet if method != "scorecam" else TinyCNN().eval()
    x = torch.randn(1, 3 if method != "scorecam" else 1, 48, 48,
                    generator=torch.Generator().manual_seed(0))
    layers = None if method != "scorecam" else [model.conv3]
    cam = compute_cam(model, x, method, target_layers=layers)
    assert cam.shape == (48, 48) and cam.dtype == np.float32
    assert 0.0 <= cam.min() and cam.max() <= 1.0 + 1e-6
    assert leftover_hooks(model) == []
    assert all(p.grad is None for p in model.parameters())


def test_hooks_removed_when_the_call_fails(shared_resnet):
    x = torch.randn(1, 3, 48, 48)
    with pytest.raises(IndexError):      # pytorch-grad-cam's own __exit__ would swallow this
        compute_cam(shared_resnet, x, "gradcam", output_index=3)
    assert leftover_hooks(shared_resnet) == []


# ------------------------------------------------------------------ sanity checks
def _rim_images(n, rng, size=24):
    yy, xx = np.mgrid[:size, :size]
    imgs, masks, labels = [], [], []
    for i in range(n):
        r = rng.uniform(4, 6)
        cy, cx = rng.uniform(r + 3, size - r - 3, 2)
        d = np.hypot(yy - cy, xx - cx)
        roi = d <= r
        img = 0.6 * roi + rng.normal(0, 0.15, (size, size))
        lab = i % 2
        if lab:
            img += 1.0 * ((d > r - 2) & (d <= r))    # bright rim: the label's only cue
        imgs.append(img)
        masks.append(roi)
        labels.append(lab)
    return (torch.tensor(np.array(imgs), dtype=torch.float32)[:, None],
            np.array(masks), np.array(labels))


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def rim_model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, _, y = _rim_images(256, rng)
    yt = torch.tensor(y, dtype=torch.float32)[:, None]
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(60):
        idx = torch.randint(0, len(x), (32,))
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, masks, yt2 = _rim_images(40, np.random.default_rng(1))
    with torch.no_grad():
        acc = ((model(xt)[:, 0] > 0).numpy().astype(int) == yt2).mean()
    return model, acc


def test_rim_model_map_lies_in_roi_and_margin(rim_model):
    model, acc = rim_model
    assert acc >= 0.9
    x, masks, y = _rim_images(12, np.random.default_rng(2))
    fractions, areas = [], []
    for i in np.flatnonzero(y == 1):
        cam = compute_cam(model, x[i:i + 1], "gradcam", target_layers=[model.conv3])
        zone = ndimage.binary_dilation(masks[i], iterations=2)
        fractions.append(cam[zone].sum() / cam.sum())
        areas.append(zone.mean())
    assert np.mean(fractions) > 0.6
    assert np.mean(fractions) > 2.5 * np.mean(areas)


def test_map_changes_under_cascading_randomisation(rim_model):
    model, _ = rim_model
    x, _, y = _rim_images(6, np.random.default_rng(3))
    i = int(np.flatnonzero(y == 1)[0])
    inp = x[i:i + 1]
    original = compute_cam(model, inp, "gradcam", target_layers=[model.conv3])
    rhos = []
    m = copy.deepcopy(model)
    torch.manual_seed(5)
    for name in ("fc", "conv3", "conv2", "conv1"):       # from the top down
        layer = getattr(m, name)
        layer.reset_parameters()
        cam = compute_cam(m, inp, "gradcam", target_layers=[m.conv3])
        rhos.append(stats.spearmanr(original.ravel(), cam.ravel())[0] if cam.std() > 0 else 0.0)
    # the map departs from the trained one as randomisation cascades down: once the
    # top conv layer is random it has moved, and with the lower layers random it is
    # essentially unrelated (a map that stayed put would be an edge detector, not
    # an explanation of the model)
    assert rhos[1] < 0.9
    assert rhos[2] < 0.3 and rhos[3] < 0.5


# ------------------------------------------------------------------ 3-D
def test_gradcam_3d_on_the_3d_resnet_matches_pytorch_grad_cam():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    resnet3d = pytest.importorskip("her2core.features.resnet3d")
    torch.manual_seed(0)
    bb = resnet3d.resnet3d18(in_chans=1).eval()
    head = ScoreHead(bb, [3, 9, 100], [1.0, -0.5, 0.8], 0.0)
    vol = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    cam = gradcam_3d(head, vol)
    assert cam.shape == (16, 32, 32) and 0 <= cam.min() and cam.max() <= 1
    assert leftover_hooks(head) == []
    with GradCAM(model=head, target_layers=[bb.layer4[-1]]) as ref_cam:
        ref = ref_cam(input_tensor=vol, targets=[ClassifierOutputTarget(0)])[0]
    assert ref.shape == cam.shape
    if ref.std() > 0 and cam.std() > 0:
        assert stats.spearmanr(ref.ravel(), cam.ravel())[0] > 0.9
    with pytest.raises(RuntimeError):
        GradCAM3D(head)(vol)                      # only inside `with`
    assert leftover_hooks(head) == []


def test_cam_does_not_change_the_shared_model_mode(shared_resnet):
    bb = shared_resnet.backbone
    assert not bb.training
    head = ScoreHead(bb, [0], [1.0], 0.0)
    assert not head.training
    compute_cam(head, torch.randn(1, 3, 32, 32), "gradcam")
    assert not any(m.training for m in bb.modules())


def test_isolated_cam_equals_shared_cam_and_never_touches_the_shared_model(shared_resnet):
    x = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(4))
    shared = compute_cam(shared_resnet, x, "gradcam++")
    seen = []
    layer4 = shared_resnet.backbone.layer4
    handle = layer4.register_forward_hook(lambda mod, i, o: seen.append(mod is layer4))
    try:
        isolated = compute_cam(shared_resnet, x, "gradcam++", isolate=True)
    finally:
        handle.remove()
    assert seen == [False]                 # only the copy ran (deepcopy copies the probe hook)
    assert_allclose(isolated, shared, atol=1e-5)
