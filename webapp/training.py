"""Training section of the Cohort page: recipes 000-004 (and demo / clinical) through ``her2core train``."""
from __future__ import annotations

import io
import logging
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import streamlit as st

from her2core.errors import Her2Error

from . import services as S
from . import widgets as W

RECIPES = {
    "000": "paper 000: DCE deep features + clinical nomogram",
    "001": "paper 001: ultrasound deep features + radiomics",
    "002": "paper 002: multiparametric MRI D-scores + clinical (HER2-low vs zero too)",
    "003": "paper 003: radiomics + clinical, model zoo",
    "004": "paper 004: late fusion of sequence models",
    "demo": "light demonstration recipe (ResNet18 at 64 px, about a minute on a CPU)",
    "clinical": "clinical nomogram only (no images)",
}


class _StatusHandler(logging.Handler):
    """Shows her2core's progress log lines in the page while training runs (script thread only)."""

    def __init__(self, placeholder, bar):
        super().__init__(logging.INFO)
        self.placeholder, self.bar, self.n = placeholder, bar, 0

    def emit(self, record):
        if not record.name.startswith("her2core"):
            return
        self.n += 1
        msg = record.getMessage().splitlines()[0][:200]
        try:
            self.placeholder.caption(msg)
            import re
            m = re.search(r"(\d+) / (\d+) cases", msg)
            if m:
                self.bar.progress(min(int(m.group(1)) / max(int(m.group(2)), 1), 1.0), text=msg)
        except Exception:  # noqa: BLE001 - never break training for a display problem
            pass


def train_section(root: str) -> None:
    recipe = st.selectbox("Recipe", list(RECIPES), format_func=lambda r: f"{r} - {RECIPES[r]}",
                          key="train_recipe")
    c1, c2, c3 = st.columns(3)
    task = c1.selectbox("Task(s)", ["her2", "her2,her2_low", "her2_low"], key="train_task")
    rnd = c2.checkbox("Random-init backbones (no pretrained weights: demonstration only)",
                      value=True, key="train_rnd")
    boot = c3.number_input("Bootstrap resamples (optimism)", 0, 2000, 0, 50, key="train_boot")
    st.caption("Pretrained weights are never downloaded: put them in the timm / torch cache or "
               "choose random-init, which every output then says.")
    if st.button("Train", key="train_go", type="primary"):
        out = S.session_upload_dir() / f"bundle_{recipe}"
        args = ["train", "--cohort", root, "--recipe", recipe, "--task", task,
                "--bootstrap", str(int(boot)), "--out", str(out), "--overwrite",
                "--cache-dir", str(S.session_upload_dir() / "feature_cache")]
        if rnd:
            args.append("--random-init")
        with st.status(f"Training recipe {recipe} ...", expanded=True) as status:
            bar = st.progress(0.0, text="starting")
            line = st.empty()
            handler = _StatusHandler(line, bar)
            lg = logging.getLogger("her2core")
            lg.addHandler(handler)
            buf = io.StringIO()
            try:
                from her2core.cli import main as cli
                with redirect_stdout(buf), redirect_stderr(buf):
                    rc = cli(args)
                if rc != 0:
                    raise Her2Error(buf.getvalue().strip().splitlines()[-1] if buf.getvalue().strip()
                                    else f"training stopped with code {rc}")
                st.session_state["train_result"] = {"recipe": recipe, "path": str(out),
                                                    "output": buf.getvalue()}
                status.update(label="Training done", state="complete")
            except SystemExit as err:
                status.update(label="Training failed", state="error")
                W.show_error(Her2Error(buf.getvalue().strip() or f"training stopped ({err})"))
            except Exception as err:  # noqa: BLE001 - shown in the page
                status.update(label="Training failed", state="error")
                W.show_error(err)
            finally:
                lg.removeHandler(handler)
    res = st.session_state.get("train_result")
    if res and Path(res["path"]).exists():
        st.success(f"Bundle written to {res['path']}")
        st.code(res.get("output", ""), language=None)
        with tempfile.TemporaryDirectory() as tmp:
            z = shutil.make_archive(str(Path(tmp) / "bundle"), "zip", res["path"])
            st.download_button("Download the bundle (.zip)", Path(z).read_bytes(),
                               file_name=f"bundle_{res['recipe']}.zip", key="dl_bundle",
                               icon=":material/download:")
        st.caption("To use it in the app, start it with HER2_BUNDLE pointing to the unzipped folder.")
