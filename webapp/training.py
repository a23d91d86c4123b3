"""Training section of the Cohort page: her2core.workflows.train_bundle with a progress bar.

The recipe labels and descriptions come from the recipe files themselves
(``her2core.models.recipes.recipe_catalogue``); a recipe editor shows the chosen recipe,
edits its editable keys, validates them with her2core's recipe check and saves a new
recipe in this session's folder. Warnings of the fitting
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
    """Recipe name -> its one-line title, read from her2core's recipe files."""
    from her2core.models.recipes import recipe_catalogue
    return {name: str(r["paper"] or r["description"] or name)
            for name, r in recipe_catalogue().items()}


def user_recipe_dir() -> Path:
    """This session's folder of recipes saved by the editor."""
    return S.session_upload_dir() / "recipes"


def _choices() -> tuple[dict[str, str], dict[str, str]]:
    """(label of every choice, recipe argument of train: a built-in name or a file path)."""
    from her2core.models.recipes import load_recipe, user_recipes
    labels = dict(recipe_labels())
    args = {k: k for k in labels}
    for name, path in user_recipes(user_recipe_dir()).items():
        key = f"mine:{name}"
        try:
            labels[key] = f"{load_recipe(path).get('paper') or name} (saved here)"
        except Exception as err:  # noqa: BLE001 - a broken file is listed with its error
            labels[key] = f"{name} (cannot be read: {err})"
        args[key] = str(path)
    return labels, args


def recipe_editor(base_arg: str) -> None:
    """View the chosen recipe, edit its editable keys, check and save it as a new recipe
    (her2core validates: the same check as every recipe file)."""
    from her2core.models.recipes import (EDITABLE_KEYS, edit_recipe, editable_text, load_recipe,
                                         save_recipe)
    try:
        base = load_recipe(base_arg)
    except Exception as err:  # noqa: BLE001 - shown in the page
        W.show_error(err)
        return
    with st.expander("View / edit this recipe", expanded=False, icon=":material/edit:"):
        st.caption("The whole recipe as training uses it (stored in the model card):")
        st.json(base, expanded=False)
        st.caption("Editable keys: " + ", ".join(EDITABLE_KEYS) + ". The recipe is checked "
                   "with the same rules as the recipe files; it is saved as a new recipe in "
                   "this session's folder and offered in the list above.")
        text = st.text_area("Recipe (YAML)", editable_text(base), height=320,
                            key=f"recipe_text_{base.get('name')}")
        name = st.text_input("New recipe name (letters, digits, - and _)",
                             f"{base.get('name')}-edited", key="recipe_new_name")
        c1, c2 = st.columns(2)
        if c1.button("Check", key="recipe_check"):
            with W.user_errors():
                edit_recipe(base, text, name)
                st.success("The recipe is valid.")
        if c2.button("Save as a new recipe", key="recipe_save", type="primary"):
            with W.user_errors():
                path = save_recipe(edit_recipe(base, text, name), user_recipe_dir())
                st.success(f"Saved {path.name}; choose it in the recipe list to train it.")
                recipe_labels.clear()


def train_section(root: str) -> None:
    labels, args = _choices()
    recipe = st.selectbox("Recipe", list(labels), format_func=lambda r: f"{r} - {labels[r]}",
                          key="train_recipe")
    from her2core.models.recipes import load_recipe
    with W.user_errors():
        st.caption(load_recipe(args[recipe]).get("description", ""))
    recipe_editor(args[recipe])
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
        out = S.session_upload_dir() / f"bundle_{recipe.replace(':', '_')}"
        settings = TrainSettings(cohort=root, out=out, recipe=args[recipe],
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
