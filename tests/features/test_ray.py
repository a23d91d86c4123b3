"""Cohort extraction on a local Ray (2 CPUs): same features as the local path, bad cases
reported with case and file while the others finish, re-runs resume from the cache.

One local Ray for the whole module (starting it and its workers is the slow part).
"""
from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

pytest.importorskip("ray")

from her2core.errors import Her2Error  # noqa: E402
from her2core.features import FeatureConfig  # noqa: E402
from her2core.features.distributed import (RayExecutor, _case_failure, add_ray_argument,  # noqa: E402
                                           executor_from_args)
from her2core.features.extract import FeatureExtractor, fill_feature_cache  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _config(**kw):
    base = dict(sequences=["T2", "DCE", "US"],
                backbones={"T2": ["resnet18"], "DCE": ["resnet18"], "US": ["resnet18"]},
                default_weights="random-init", input_size=32, batch_size=3, num_workers=0,
                radiomics=True, radiomics_sequences=["US"])
    base.update(kw)
    return FeatureConfig(**base)


@pytest.fixture(scope="module")
def ray_executor():
    ex = RayExecutor(num_cpus=2)
    ex.connect()
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def one_thread():
    """The local reference runs with the workers' thread count (1 CPU each)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_features(tiny_cohort_ro, one_thread):
    df, errors = FeatureExtractor(_config()).extract_cohort(tiny_cohort_ro)
    assert errors == [] and len(df) == 8
    return df


def test_ray_features_identical_to_local(tiny_cohort_ro, ray_executor, local_features):
    df, errors = FeatureExtractor(_config()).extract_cohort(tiny_cohort_ro, executor=ray_executor)
    assert errors == []
    assert list(df.index) == list(local_features.index)
    assert list(df.columns) == list(local_features.columns)
    assert_array_equal(df.to_numpy(), local_features.to_numpy())   # bit for bit
    info = df.attrs["provenance"]["executor"]
    assert info["executor"] == "ray" and info["workers"] == 2 and info["split"] is False
    assert len({a["pid"] for a in info["actors"]}) == 2
    assert info["cluster"]["CPU"] == 2.0


def test_bad_case_reported_others_finish_and_reruns_resume(tiny_cohort, tiny_cohort_ro,
                                                           ray_executor, local_features, tmp_path):
    bad = tiny_cohort / "cases" / "syn-0004" / "T2.nii.gz"
    bad.write_bytes(b"not a nifti file")
    cache = tmp_path / "cache"
    cfg = _config()

    # interrupted after the first chunk (3 cases, 2 of the last chunk, or 2 + the broken
    # one): what it finished is in the cache already
    class Stop(Exception):
        pass

    def stop_after_first(done, total, message):
        raise Stop
    with pytest.raises(Stop):
        fill_feature_cache(tiny_cohort, cfg, cache, executor=ray_executor, progress=stop_after_first)
    first = len(list(cache.glob("*.parquet")))
    assert first in (2, 3)

    # re-run: resumes, the broken case is reported (case and file), the others finish
    res = fill_feature_cache(tiny_cohort, cfg, cache, executor=ray_executor)
    assert (res.cached, res.computed) == (first, 7 - first)
    assert [e.case_id for e in res.errors] == ["syn-0004"]
    assert "case syn-0004" in str(res.errors[0]) and "T2.nii.gz" in str(res.errors[0])
    assert list(res.features.index) == [f"syn-{i:04d}" for i in range(8) if i != 4]

    # the file fixed: only that case is computed. The resumed runs batched other cases
    # together than one local pass, and a network's float rounding depends a little on
    # the batch: equal to float32 rounding (bit for bit above, with the same batches)
    shutil.copy(tiny_cohort_ro / "cases" / "syn-0004" / "T2.nii.gz", bad)
    res = fill_feature_cache(tiny_cohort, cfg, cache, executor=ray_executor)
    assert (res.cached, res.computed, res.errors) == (7, 1, [])
    assert list(res.features.columns) == list(local_features.columns)
    assert_allclose(res.features.to_numpy(), local_features.to_numpy(), rtol=1e-4, atol=1e-6)
    assert res.to_dict()["executor"]["workers"] == 2


def test_gpu_layout_on_cpus_prepares_in_tasks(tiny_cohort_ro, ray_executor, local_features):
    """CPU tasks load and crop, an actor runs the networks: the layout used with GPUs."""
    ray_executor.split = True  # its CPU actors make way for one forward actor + tasks
    try:
        df, errors = FeatureExtractor(_config()).extract_cohort(tiny_cohort_ro,
                                                                executor=ray_executor)
    finally:
        ray_executor.split = False
    assert errors == []
    assert_array_equal(df.to_numpy(), local_features.to_numpy())
    assert df.attrs["provenance"]["executor"]["split"] is True


def test_too_many_workers_is_a_clear_error(tiny_cohort_ro, ray_executor):
    ex = RayExecutor(workers=5)
    with pytest.raises(Her2Error, match="5 Ray worker.*need 5 CPU.*cluster has 2 CPU"):
        FeatureExtractor(_config()).extract_cohort(tiny_cohort_ro, executor=ex)


def test_dead_worker_names_case_and_folder(tiny_cohort_ro):
    import ray
    from her2core.cohort import read_cohort
    files = read_cohort(tiny_cohort_ro).files("syn-0002")
    err = _case_failure(("syn-0002", files), _config(), ray.exceptions.WorkerCrashedError(), None)
    text = str(err)
    assert err.case_id == "syn-0002" and "case syn-0002" in text
    assert text.startswith("case syn-0002, file ") and "syn-0002" in err.file
    assert "worker died" in text and "more memory" in text


def test_ray_arguments():
    p = argparse.ArgumentParser()
    add_ray_argument(p)
    assert executor_from_args(p.parse_args([])) is None
    local = executor_from_args(p.parse_args(["--ray"]))
    assert isinstance(local, RayExecutor) and local.address is None and local.workers is None
    remote = executor_from_args(p.parse_args(["--ray", "head:6379", "--ray-workers", "3"]))
    assert (remote.address, remote.workers) == ("head:6379", 3)


def test_predict_on_ray_equals_predict_here(tiny_cohort_ro, ray_executor, one_thread):
    """`predict --ray`: the bundle's predictions computed with Ray workers are the local ones."""
    from pathlib import Path

    from her2core.bundle import load_bundle
    from her2core.cli import build_parser
    from her2core.cohort import read_cohort
    from her2core.workflows.predict import predict_cohort
    demo = Path(__file__).resolve().parents[2] / "assets" / "demo_bundle"
    if not (demo / "MANIFEST").is_file():
        pytest.skip("assets/demo_bundle is not in this checkout")
    b, coh = load_bundle(demo), read_cohort(tiny_cohort_ro)
    here = predict_cohort(b, coh).table.set_index("case_id")
    there = predict_cohort(b, coh, executor=ray_executor).table.set_index("case_id")
    assert list(there.index) == list(here.index) and len(here) == 8
    np.testing.assert_allclose(there["p_her2"], here["p_her2"], rtol=0, atol=1e-9)
    for cmd in ("train", "predict"):           # both commands take --ray [ADDRESS]
        args = build_parser().parse_args([cmd, "--cohort", "c", "--out", "o", "--ray", "head:6379"]
                                         + (["--bundle", "b"] if cmd == "predict" else []))
        assert args.ray == "head:6379"
