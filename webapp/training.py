"""Training section of the Cohort page: her2core.workflows.train_bundle with a progress bar.

The recipe labels come from the recipe files themselves; warnings of the fitting
libraries go to the server log, not the page; the bundle is offered to this
session as soon as it is written (no restart).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import streamlit as st

from . import services as S
from . import widgets as W

log = logging.getLogger(__name__)


@st.cache_data(show_spinner=False)
def recipe_labels() -> dict[str, str]:
    """Recipe name -> its one-line description, read from her2core's recipe files."""
    from her2core.models.recipes import RECIPES, load_recipe
    out = {}
    for name in RECIPES:
        r = load_recipe(name)
        out[name] = str(r.get("paper") or r.get("description") or name)
    return out


def train_section(root: str) -> None:
    labels = recipe_labels()
    recipe = st.selectbox("Recipe", list(labels), format_func=lambda r: f"{r} - {labels[r]}",
                          key="train_recipe")
    c1, c2, c3 = st.columns(3)
    task = c1.selectbox("Task(s)", ["her2", "her2,her2_low", "her2_low"], key="train_task")
    rnd = c2.checkbox("Random-init backbones (no pretrained weights: demonstration only)",
                      value=True, key="train_rnd")
    boot = c3.number_input("Bootstrap resamples (optimism correction)", 0, 2000, 200, 50,
                           key="train_boot",
                           help="Harrell's optimism bootstrap refits the whole pipeline per "
                                "resample; out-of-fold validation predictions are always stored")
    where = st.text_input("Hold out for external validation (COL=VALUE, e.g. center=B)", "",
                          key="train_where")
    st.caption("Pretrained weights are never downloaded: put them in the timm / torch cache or "
               "choose random-init, which every output then says.")
    if st.button("Train", key="train_go", type="primary"):
        from her2core.workflows.train import TrainSettings, train_bundle
        out = S.session_upload_dir() / f"bundle_{recipe}"
        settings = TrainSettings(cohort=root, out=out, recipe=recipe,
                                 tasks=tuple(t for t in task.split(",") if t),
                                 where=where.strip() or None, bootstrap=int(boot),
                                 random_init=bool(rnd), overwrite=True,
                                 cache_dir=str(S.session_upload_dir() / "feature_cache"))
        with st.status(f"Training recipe {recipe} ...", expanded=True) as status:
            bar = st.progress(0.0, text="starting")

            def progress(done, total, message=""):
                bar.progress(min(max(done / max(total, 1), 0.0), 1.0), text=message)

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("once")       # to the server log once, never the page
                    res = train_bundle(settings, progress=progress)
                st.session_state["train_result"] = {"recipe": recipe, "path": str(res.path),
                                                    "lines": res.lines(), "warnings": res.warnings,
                                                    "skipped": [str(e) for e in res.errors]}
                S.register_bundle(res.path, f"{recipe} trained here ({Path(root).name})",
                                  "trained here")
                status.update(label="Training done: the new model is in use", state="complete")
            except Exception as err:  # noqa: BLE001 - shown in the page
                status.update(label="Training failed", state="error")
                W.show_error(err)
    res = st.session_state.get("train_result")
    if res and Path(res["path"]).exists():
        st.success(f"Bundle written and selected for this session: {Path(res['path']).name}")
        for line in res["lines"]:
            st.caption(line)
        for w in res.get("warnings", []):
            st.warning(w)
        if res.get("skipped"):
            with st.expander(f"{len(res['skipped'])} case(s) skipped"):
                for e in res["skipped"]:
                    st.write("- " + e)
        with tempfile.TemporaryDirectory() as tmp:
            z = shutil.make_archive(str(Path(tmp) / "bundle"), "zip", res["path"])
            st.download_button("Download the bundle (.zip)", Path(z).read_bytes(),
                               file_name=f"bundle_{res['recipe']}.zip", key="dl_bundle",
                               icon=":material/download:")
