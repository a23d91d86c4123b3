"""Training section of the Cohort page (recipes 000-004 of the seed papers)."""
from __future__ import annotations

import streamlit as st

from . import services as S
from . import widgets as W

RECIPES = {
    "000": "paper 000: DCE deep features + clinical nomogram",
    "001": "paper 001: ultrasound deep features + radiomics",
    "002": "paper 002: multiparametric MRI D-scores + clinical (HER2-low vs zero too)",
    "003": "paper 003: radiomics + clinical, model zoo",
    "004": "paper 004: late fusion of sequence models",
}


def _trainer():
    """her2core's training entry point, when this build has one."""
    for mod, fn in (("her2core.training", "train_bundle"), ("her2core.bundle", "train_bundle"),
                    ("her2core.models.recipes", "train_bundle")):
        try:
            m = __import__(mod, fromlist=[fn])
            if hasattr(m, fn):
                return getattr(m, fn)
        except ImportError:
            continue
    return None


def train_section(root: str) -> None:
    recipe = st.selectbox("Recipe", list(RECIPES), format_func=lambda r: f"{r} - {RECIPES[r]}",
                          key="train_recipe")
    fn = _trainer()
    if fn is None:
        st.info("Training a bundle from the app is not available in this build (no training entry "
                "point in her2core yet); use `python3 -m her2core train` when it is.",
                icon=":material/block:")
        return
    if st.button("Train", key="train_go", type="primary"):
        with st.status(f"Training recipe {recipe} ...", expanded=True) as status:
            bar = st.progress(0.0)
            with W.user_errors():
                out = S.session_upload_dir() / f"bundle_{recipe}"
                res = fn(root, recipe=recipe, out=out,
                         progress=lambda f, t="": bar.progress(min(float(f), 1.0), text=t))
                st.session_state["train_result"] = {"recipe": recipe, "path": str(out), "result": res}
                status.update(label="Training done", state="complete")
    res = st.session_state.get("train_result")
    if res:
        st.success(f"Bundle written to {res['path']}")
        import io
        import shutil
        import tempfile
        from pathlib import Path
        with tempfile.TemporaryDirectory() as tmp:
            z = shutil.make_archive(str(Path(tmp) / "bundle"), "zip", res["path"])
            st.download_button("Download the bundle (.zip)", Path(z).read_bytes(),
                               file_name=f"bundle_{res['recipe']}.zip", key="dl_bundle")
