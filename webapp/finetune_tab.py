"""Fine-tuning tab of the Cohort page: a recipe with fine-tuned networks (papers 001, 003,
004), trained in a background thread with live per-fold curves, cancel and resume.

The work is her2core.workflows.train.train_bundle (which fine-tunes the recipe's
networks through her2core.finetune); this module only holds the job, draws its
events and offers the bundle to the session when it is written.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from her2core.errors import Her2Error

from . import services as S
from . import widgets as W

log = logging.getLogger(__name__)

JOB_KEY = "finetune_job"


@dataclass
class FinetuneJob:
    """A training run in a background thread; the thread writes here, the page reads."""
    recipe: str
    out: Path
    runs: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    events: list = field(default_factory=list)
    progress: tuple[int, int, str] = (0, 1, "starting")
    state: str = "running"                 # running | done | failed | cancelled
    message: str = ""
    result: Any = None
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.time)

    def run(self, settings) -> None:
        from her2core.finetune import FinetuneCancelled
        from her2core.workflows.train import train_bundle

        def progress(done, total, message=""):
            self.progress = (int(done), int(total), str(message))

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("once")
                self.result = train_bundle(settings, progress=progress)
            self.state = "done"
        except FinetuneCancelled as err:
            self.state, self.message = "cancelled", str(err)
        except Her2Error as err:
            self.state, self.message = "failed", str(err)
        except Exception as err:  # noqa: BLE001 - reported in the page, logged in full
            log.exception("fine-tuning job failed")
            self.state, self.message = "failed", f"{type(err).__name__}: {err}"


@st.cache_data(show_spinner=False)
def network_recipes() -> dict[str, str]:
    """Recipes that fine-tune networks: name -> label (from the recipe files)."""
    from her2core.models.recipes import RECIPES, load_recipe, network_specs
    out = {}
    for name in RECIPES:
        r = load_recipe(name)
        if network_specs(r):
            out[name] = str(r.get("paper") or name)
    return out


def _curves(events: list):
    """Validation AUC and training loss per epoch, one line per fold (plotly)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation AUC", "training loss"))
    by_fold: dict[int, list] = {}
    for ev in events:
        if ev.kind == "epoch" and ev.fold is not None:
            by_fold.setdefault(ev.fold, []).append(ev)
    for k, evs in sorted(by_fold.items()):
        x = [e.epoch for e in evs]
        fig.add_trace(go.Scatter(x=x, y=[e.val_auc for e in evs], mode="lines+markers",
                                 name=f"fold {k + 1}", legendgroup=str(k)), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[e.train_loss for e in evs], mode="lines+markers",
                                 name=f"fold {k + 1}", legendgroup=str(k), showlegend=False),
                      row=1, col=2)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), template="plotly_dark")
    fig.update_xaxes(title_text="epoch")
    return fig


def finetune_tab(root: str) -> None:
    recipes = network_recipes()
    if not recipes:
        st.info("No recipe fine-tunes a network.")
        return
    job: FinetuneJob | None = st.session_state.get(JOB_KEY)
    running = job is not None and job.state == "running"
    recipe = st.selectbox("Recipe", list(recipes), format_func=lambda r: f"{r} - {recipes[r]}",
                          key="ft_recipe", disabled=running)
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs per fold", 1, 500, 2, key="ft_epochs", disabled=running)
    folds = c2.number_input("Folds", 2, 10, 2, key="ft_folds", disabled=running)
    size = c3.number_input("Input size (px)", 16, 512, 64, 16, key="ft_size", disabled=running)
    task = c4.selectbox("Task(s)", ["her2", "her2,her2_low"], key="ft_task", disabled=running)
    rnd = st.checkbox("Random-init networks (no pretrained weights: demonstration only)", value=True,
                      key="ft_rnd", disabled=running)
    st.caption("The recipe's published settings are kept except these (a CPU run of a few epochs "
               "at a small size shows the mechanics; the papers trained for hundreds of epochs on "
               "a GPU). Each network is trained per task with its own stratified K-fold: every "
               "training case gets one out-of-fold score, on which the nomogram level is fitted.")
    b1, b2, b3 = st.columns(3)
    start = b1.button("Start", type="primary", key="ft_start", disabled=running)
    resume = b2.button("Resume the last run", key="ft_resume",
                       disabled=running or job is None or job.state not in ("cancelled", "failed"))
    if b3.button("Cancel", key="ft_cancel", disabled=not running):
        job.cancel.set()
    if start or resume:
        from her2core.models.recipes import load_recipe
        from her2core.workflows.train import TrainSettings
        r = copy.deepcopy(load_recipe(recipe if start else job.recipe))
        for net in r.get("networks", []):
            net.setdefault("settings", {}).update(epochs=int(epochs), folds=int(folds),
                                                  size=int(size), num_workers=0)
        base = S.session_upload_dir() / "finetune"
        out = base / f"bundle_{r['name']}"
        runs = job.runs if (resume and job is not None) else base / f"runs_{r['name']}_{int(time.time())}"
        new = FinetuneJob(recipe=r["name"], out=out, runs=runs)
        settings = TrainSettings(cohort=root, out=out, recipe=r, tasks=tuple(task.split(",")),
                                 bootstrap=0, random_init=bool(rnd), overwrite=True,
                                 network_events=new.events.append, cancel=new.cancel,
                                 networks_dir=runs, resume=bool(resume),
                                 cache_dir=str(S.session_upload_dir() / "feature_cache"))
        new.thread = threading.Thread(target=new.run, args=(settings,), name="her2-finetune",
                                      daemon=True)
        new.thread.start()
        st.session_state[JOB_KEY] = new
        st.rerun()
    if job is not None:
        st.fragment(run_every=1.0 if job.state == "running" else None)(_status)(job)


def _status(job: FinetuneJob) -> None:
    """The job's progress, curves and outcome (a fragment polling while it runs)."""
    if job.state != "running" and st.session_state.get("ft_polling"):
        st.session_state["ft_polling"] = False
        st.rerun()                       # once: the whole page shows the finished state
    st.session_state["ft_polling"] = job.state == "running"
    done, total, message = job.progress
    st.progress(min(done / max(total, 1), 1.0), text=message)
    if job.events:
        st.plotly_chart(_curves(list(job.events)), key="ft_curves", config={"displaylogo": False})
        last = job.events[-1]
        if last.kind == "epoch":
            st.caption(f"fold {last.fold + 1}/{last.n_folds}, epoch {last.epoch}/{last.n_epochs}: "
                       f"loss {last.train_loss:.3f}, validation AUC "
                       f"{'-' if last.val_auc is None else f'{last.val_auc:.3f}'}")
    if job.state == "running":
        st.caption(f"running for {time.time() - job.started:.0f} s")
        return
    if job.state == "done" and job.result is not None:
        if not st.session_state.get(f"ft_registered_{job.out}"):
            S.register_bundle(job.result.path, f"{job.recipe} fine-tuned here", "trained here")
            st.session_state[f"ft_registered_{job.out}"] = True
        st.success("Fine-tuning done: the new model is in use for this session.")
        for line in job.result.lines():
            st.caption(line)
    elif job.state == "cancelled":
        st.warning("Cancelled: the last finished epoch is kept; press Resume to continue.")
    else:
        W.show_error(Her2Error(job.message or "fine-tuning failed"))
