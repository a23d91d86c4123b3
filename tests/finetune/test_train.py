"""K-fold fine-tuning end to end on a synthetic cohort: honest out-of-fold logits,
held-out scoring by the fold ensemble, determinism, files and their checksums."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose

from her2core.cohort import read_cohort
from her2core.features.weights import file_sha256
from her2core.finetune import FineTunedEnsemble, finetune, load_result

from .conftest import WHERE, us_settings


def _manifest(out):
    return json.loads((out / "finetune.json").read_text())


def _check_run(out, cohort_root, kind):
    coh = read_cohort(cohort_root)
    train_ids = coh.exclude(WHERE).case_ids
    held_ids = coh.subset(WHERE).case_ids
    y = coh.labels("her2")
    m = _manifest(out)
    oof = pd.read_csv(out / "oof.csv", dtype={"case_id": str})
    held = pd.read_csv(out / "heldout.csv", dtype={"case_id": str})
    assert list(oof.columns) == ["case_id", "fold", "y", "logit"]
    assert list(held.columns) == ["case_id", "y", "logit"]
    # every training case exactly once, with its own label; held-out = the where-cases
    assert sorted(oof.case_id) == sorted(train_ids) and oof.case_id.is_unique
    assert sorted(held.case_id) == sorted(held_ids)
    assert (oof.set_index("case_id").y == y.loc[train_ids]).all()
    assert (held.set_index("case_id").y == y.loc[held_ids]).all()
    # folds partition the training cases; a case's fold model never trained on it
    folds = m["folds"]
    assert len(folds) == 2
    for f in folds:
        assert set(f["train_ids"]).isdisjoint(f["val_ids"])
        assert sorted(f["train_ids"] + f["val_ids"]) == sorted(train_ids)
        assert set(oof.case_id[oof.fold == f["fold"]]) == set(f["val_ids"])
        assert 1 <= f["best_epoch"] <= 2 and len(f["history"]) == 2
        # stratified: both classes in every validation fold
        assert set(y.loc[f["val_ids"]]) == {0, 1}
    # the files are the ones recorded
    for f in folds:
        assert m["models"][f["model_file"]] == "sha256:" + file_sha256(out / f["model_file"])
        assert f["sha256"] == file_sha256(out / f["model_file"])
    assert m["kind"] == kind and m["random_init"] is True and "random" in m["warning"]
    assert m["weights"]["identity"] == "random-init"
    assert not (out / "state").exists()
    # each out-of-fold logit is the prediction of the model that did not see the case
    ens = FineTunedEnsemble.load(out)
    ids, inputs, errors = ens._decode(cohort_root, train_ids + held_ids, 0)
    assert errors == []
    per_fold = ens.fold_logits([inputs[c] for c in ids])
    pos = {c: i for i, c in enumerate(ids)}
    for _, row in oof.iterrows():
        assert_allclose(per_fold[int(row.fold), pos[row.case_id]], row.logit, rtol=0, atol=1e-6)
    # held-out cases: the mean of the fold logits
    for _, row in held.iterrows():
        assert_allclose(per_fold[:, pos[row.case_id]].mean(), row.logit, rtol=0, atol=1e-6)
    return m, oof, held, ens


def test_us_run_end_to_end(us_run, ft_cohort):
    m, oof, held, ens = _check_run(us_run, ft_cohort, "2d")
    assert m["input"]["shape"] == [1, 32, 32] and m["input"]["dilation_px"] == 8
    assert m["settings"]["mixup"] == 0.4 and m["sequence"] == "US"
    assert ens.input_shape == (3, 32, 32) and len(ens.networks) == 2
    # the out-of-fold AUC in the manifest is the AUC of oof.csv
    from her2core.metrics import auc
    assert_allclose(m["oof_auc"], auc(oof.y, oof.logit), atol=1e-12)
    assert_allclose(m["heldout_auc"], auc(held.y, held.logit), atol=1e-12)


def test_dce_run_end_to_end(dce_run, ft_cohort):
    out, result, events = dce_run
    m, oof, held, ens = _check_run(out, ft_cohort, "3d")
    assert m["input"]["shape"] == [1, 16, 16, 16]
    # the typed result mirrors the files
    assert_allclose(result.oof.logit.to_numpy(), oof.logit.to_numpy(), atol=1e-9)
    assert list(result.heldout.case_id) == list(held.case_id)
    assert [f.best_epoch for f in result.folds] == [f["best_epoch"] for f in m["folds"]]
    # progress: typed events, one per epoch and fold, counting up to folds x epochs
    ep = [e for e in events if e.kind == "epoch"]
    assert [(e.fold, e.epoch) for e in ep] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert [e.done for e in ep] == [1, 2, 3, 4] and {e.total for e in ep} == {4}
    assert all(e.train_loss > 0 and e.val_loss > 0 for e in ep)
    assert [e.kind for e in events if e.kind != "prepare"][-2:] == ["heldout", "done"]
    hist = m["folds"][0]["history"]
    assert [h["val_auc"] for h in hist] == [e.val_auc for e in ep[:2]]
    # resume on a finished folder reads it back (no training)
    again = finetune(ft_cohort, result.settings, out, where=WHERE, resume=True)
    assert_allclose(again.oof.logit, result.oof.logit, atol=0)
    assert load_result(out).manifest["models"] == m["models"]


def test_workers_do_not_change_the_result(us_run, ft_cohort, tmp_path):
    """Seeded per-case augmentation: decoding and augmenting in a worker process
    gives bit-identical models and out-of-fold logits to the in-process run."""
    out = tmp_path / "w1"
    finetune(ft_cohort, us_settings(num_workers=1), out, where=WHERE)
    a = pd.read_csv(us_run / "oof.csv")
    b = pd.read_csv(out / "oof.csv")
    pd.testing.assert_frame_equal(a, b)
    assert _manifest(out)["models"] == _manifest(us_run)["models"]


def test_predictions_from_images_and_cohort_agree(us_run, ft_cohort):
    from her2core.finetune.data import load_case_image
    ens = FineTunedEnsemble.load(us_run)
    coh = read_cohort(ft_cohort)
    held = pd.read_csv(us_run / "heldout.csv", dtype={"case_id": str}).set_index("case_id")
    df, errors = ens.predict_cohort(coh, held.index.tolist())
    assert errors == []
    assert_allclose(df.logit.to_numpy(), held.logit.to_numpy(), atol=1e-6)
    assert_allclose(df.p, 1 / (1 + np.exp(-df.logit)), atol=1e-12)
    cid = held.index[0]
    image, mask = load_case_image(coh.files(cid), "US")
    assert_allclose(ens.predict_images({"US": image}, {"US": mask}), held.logit[cid], atol=1e-6)


def test_penultimate_features(us_run, ft_cohort):
    ens = FineTunedEnsemble.load(us_run)
    oof = pd.read_csv(us_run / "oof.csv", dtype={"case_id": str})
    ids = oof.case_id.tolist()[:4]
    f0, _ = ens.penultimate_features(ft_cohort, ids, fold=0)
    f1, _ = ens.penultimate_features(ft_cohort, ids, fold=1)
    mean, _ = ens.penultimate_features(ft_cohort, ids)
    honest, _ = ens.penultimate_features(ft_cohort, ids, fold="oof")
    assert mean.shape == (4, 512) and list(mean.index) == ids
    assert mean.columns[0] == "US__ft_resnet18__f0000"
    assert mean.columns[-1] == "US__ft_resnet18__f0511"
    assert_allclose(mean.to_numpy(), (f0.to_numpy() + f1.to_numpy()) / 2, atol=1e-6)
    fold_of = dict(zip(oof.case_id, oof.fold))
    for c in ids:
        want = (f0 if fold_of[c] == 0 else f1).loc[c].to_numpy()
        assert_allclose(honest.loc[c].to_numpy(), want, atol=1e-6)
    # the features are what the head reads: logit = head(features)
    net = ens.networks[0]
    x = torch.tensor(f0.to_numpy(), dtype=torch.float32)
    lg = net.get_classifier()(x).reshape(-1).detach().numpy()
    ids_all, inputs, _ = ens._decode(ft_cohort, ids, 0)
    assert_allclose(lg, ens.fold_logits([inputs[c] for c in ids_all])[0], atol=1e-5)


def test_changed_model_file_is_refused(us_run, tmp_path):
    import shutil

    from her2core.errors import BundleError
    dst = tmp_path / "copy"
    shutil.copytree(us_run, dst)
    data = bytearray((dst / "fold1.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (dst / "fold1.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="fold1.safetensors.*sha256 differs"):
        FineTunedEnsemble.load(dst)


@pytest.mark.slow
def test_augmenting_on_the_device_gives_the_same_models(dce_run, ft_cohort, tmp_path):
    """augment_on="device" (the default for 3-D volumes on CUDA) applies the same per-case
    seeded transforms after the copy to the device: on the CPU, the same bytes."""
    from .conftest import dce_settings
    out, result, _ = dce_run
    other = finetune(ft_cohort, dce_settings(augment_on="device"), tmp_path / "dev", where=WHERE)
    pd.testing.assert_frame_equal(other.oof, result.oof, check_exact=True)
    assert [f.sha256 for f in other.folds] == [f.sha256 for f in result.folds]
