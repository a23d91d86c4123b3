"""The bad-input corpus through every entry point: 0 crashes, every refusal names case and file."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(900)
def test_corpus_has_no_crash_and_every_error_names_its_file(tmp_path):
    out = tmp_path / "corpus.json"
    proc = subprocess.run([sys.executable, str(HERE / "run_corpus.py"), "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(out.read_text(encoding="utf-8"))
    bad = [r for r in summary["results"] if r["outcome"] != "clean"]
    assert summary["crash"] == 0, bad
    assert summary["wrong"] == 0, bad
    assert summary["items"] >= 50
    assert summary["runs"] == summary["clean"]
    # the corpus is bounded in memory: no item allocated what a header claimed
    assert summary["peak_rss_mb"] < 3000
