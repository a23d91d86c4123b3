"""Fixtures of the app tests: a model bundle for the prediction flows."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory) -> Path:
    """assets/demo_bundle, else $HER2_BUNDLE, else one trained now with tools/make_demo_bundle.py.

    Training (recipe demo, random-init ResNet18 at 64 px, no bootstrap) takes a
    minute or two on a CPU; it only happens in a checkout without the bundle.
    """
    shipped = ROOT / "assets" / "demo_bundle"
    if (shipped / "MANIFEST").is_file():
        return shipped
    env = os.environ.get("HER2_BUNDLE")
    if env and (Path(env) / "MANIFEST").is_file():
        return Path(env)
    if not (ROOT / "assets" / "demo_cohort" / "cohort.csv").is_file():
        pytest.skip("neither assets/demo_bundle nor assets/demo_cohort is in this checkout")
    out = tmp_path_factory.mktemp("bundle") / "demo_bundle"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_demo_bundle.py"), "--bootstrap", "0",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if r.returncode != 0 or not (out / "MANIFEST").is_file():
        pytest.fail("could not train a demo bundle for the app tests:\n" + r.stdout[-2000:] + r.stderr[-2000:])
    return out


@pytest.fixture
def with_bundle(demo_bundle, monkeypatch):
    """HER2_BUNDLE set to the demo bundle, with the app's shared caches cleared around the test."""
    import streamlit as st
    monkeypatch.setenv("HER2_BUNDLE", str(demo_bundle))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield demo_bundle
    st.cache_resource.clear()
    st.cache_data.clear()
