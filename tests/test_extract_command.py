"""`python -m her2core extract`: fills the feature cache, resumes, reports a bad case."""
from __future__ import annotations

import json
import shutil

from her2core import cli
from her2core.features import FeatureConfig


def _config_file(tmp_path):
    cfg = FeatureConfig(sequences=["DCE"], backbones={"DCE": ["resnet18"]}, input_size=32,
                        batch_size=4, num_workers=0, device="cpu")
    return cfg.save(tmp_path / "features.json")


def test_extract_fills_cache_then_reads_it(tiny_cohort, tiny_cohort_ro, tmp_path, capsys):
    conf, cache, out = _config_file(tmp_path), tmp_path / "cache", tmp_path / "run.json"
    (tiny_cohort / "cases" / "syn-0005" / "DCE.nii.gz").write_bytes(b"broken")
    args = ["extract", "--cohort", str(tiny_cohort), "--config", str(conf), "--random-init",
            "--cache-dir", str(cache), "--json", str(out), "--out", str(tmp_path / "f.csv")]
    assert cli.main(args) == 1                       # a case was skipped
    text = capsys.readouterr().out
    assert "7 of 8 cases" in text and "7 computed here, 0 from the cache" in text
    assert "case syn-0005, file " in text and "DCE.nii.gz" in text
    run = json.loads(out.read_text())
    assert (run["computed"], run["cached"], run["features"]) == (7, 0, 512)
    assert [e["case_id"] for e in run["errors"]] == ["syn-0005"]
    assert run["executor"] is None and "randomly initialised" in run["warning"]
    assert len(list(cache.glob("*.parquet"))) == 7
    assert (tmp_path / "f.csv").read_text().splitlines()[0].startswith("case_id,DCE__resnet18__f0000")
    shutil.copy(tiny_cohort_ro / "cases" / "syn-0005" / "DCE.nii.gz",
                tiny_cohort / "cases" / "syn-0005" / "DCE.nii.gz")
    assert cli.main(args) == 0                       # the re-run computes only the fixed case
    run = json.loads(out.read_text())
    assert (run["computed"], run["cached"], run["errors"]) == (1, 7, [])
    assert "1 computed here, 7 from the cache" in capsys.readouterr().out


def test_extract_needs_an_image_recipe(tiny_cohort, capsys):
    assert cli.main(["extract", "--cohort", str(tiny_cohort), "--recipe", "clinical"]) == 2
    assert "uses no image features" in capsys.readouterr().err
