"""Shared, generic fixtures: tiny synthetic cohorts (her2core.synthetic) on disk.

Keep fixtures small and deterministic; anything heavier belongs in the test
module that needs it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_SHAPE = (32, 32, 8)


def _make(out: Path, **kw) -> Path:
    from her2core.synthetic import make_cohort
    params = dict(n=8, seed=0, centres=2, modalities="both", shape=TINY_SHAPE, us_size=64)
    params.update(kw)
    return make_cohort(out, **params)


@pytest.fixture(scope="session")
def _tiny_cohort_master(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("tiny_cohort_master") / "cohort")


@pytest.fixture
def tiny_cohort(tmp_path, _tiny_cohort_master) -> Path:
    """A writable copy of an 8-case MRI+US synthetic cohort (2 centres, 32x32x8 MRI, 64x64 US).

    Layout of ../shared/cohort-format.md; cases syn-0000 .. syn-0007, centre A
    for even and B for odd indices; truth.json holds the true phenotypes.
    """
    dst = tmp_path / "cohort"
    shutil.copytree(_tiny_cohort_master, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_cohort_ro(_tiny_cohort_master) -> Path:
    """The same 8-case cohort, shared by the whole session: do not modify it."""
    return _tiny_cohort_master


@pytest.fixture(scope="session")
def clinical_cohort(tmp_path_factory) -> Path:
    """A 200-case clinical-only synthetic cohort (cohort.csv + truth.json, no images); read-only."""
    return _make(tmp_path_factory.mktemp("clinical_cohort") / "cohort", n=200, seed=1,
                 modalities="none")
