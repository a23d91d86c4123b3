"""Everything the pages need from her2core, behind streamlit caches.

* ``st.cache_resource`` (shared, read-only, bounded): loaded images keyed by
  file hash, loaded bundles and their CasePredictor keyed by path + manifest, the
  demo cohort.
* ``st.cache_data`` (bounded): pure steps keyed by file hashes (cohort tables).
* The model in use is a per-session choice (``st.session_state[BUNDLE_KEY]``) among
  :func:`bundle_choices`: the shipped demo bundles, ``HER2_BUNDLE``, and the bundles
  this session trained or uploaded. Switching needs no restart.
"""
from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from her2core.errors import Her2Error, ImageLoadError

from her2core.provenance import file_sha256

from . import clinical as clin

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
SEQUENCES = ("DCE", "T1", "T2", "US")
MASK_KEYS = ("mask", "US_mask")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".zip", ".png", ".jpg", ".jpeg",
                  ".bmp", ".dcm")


# ----------------------------------------------------------------------------- case data
@dataclass
class CaseData:
    """What the app knows about the current case (paths, hashes, clinical row)."""
    case_id: str
    source: str                                   # "demo" | "upload" | "teaching"
    files: dict[str, str] = field(default_factory=dict)     # sequence -> path
    hashes: dict[str, str] = field(default_factory=dict)    # sequence -> sha256
    clinical: dict[str, Any] = field(default_factory=dict)
    label: dict[str, Any] = field(default_factory=dict)     # her2 / her2_ihc when known
    note: str = ""
    names: dict[str, str] = field(default_factory=dict)     # sequence -> the user's file name
    dicom: dict[str, tuple[str, str]] = field(default_factory=dict)  # sequence -> (DICOM zip, series UID)
    folder: str | None = None                                # this case's upload folder (removed with it)

    @property
    def key(self) -> str:
        """Identity of the image content (changes when any file changes)."""
        h = hashlib.sha256()
        for k in sorted(self.hashes):
            h.update(f"{k}={self.hashes[k]};".encode())
        return h.hexdigest()[:16]

    @property
    def sequences(self) -> list[str]:
        return [s for s in SEQUENCES if s in self.files]

    @property
    def reference(self) -> str | None:
        """Sequence the MRI mask lies on (DCE, else T1, else first) or US."""
        for s in ("DCE", "T1", "T2", "US"):
            if s in self.files:
                return s
        return None

    def mask_key_for(self, sequence: str) -> str:
        return "US_mask" if sequence == "US" else "mask"

    def mask_reference(self, mask_key: str) -> str | None:
        """The sequence a mask file lies on (cohort format: mask on DCE, else T1; US_mask on US)."""
        from her2core.cohort import MASK_REFERENCE
        return next((s for s in MASK_REFERENCE.get(mask_key, ()) if s in self.files), None)


@st.cache_resource(show_spinner=False)
def environment() -> dict[str, Any]:
    """Versions and whether CUDA is in use (torch imported lazily, errors reported)."""
    import platform
    import plotly
    info: dict[str, Any] = {"python": platform.python_version(), "streamlit": st.__version__,
                            "numpy": np.__version__, "plotly": plotly.__version__}
    try:
        import her2core
        info["her2core"] = her2core.__version__
    except Exception:  # noqa: BLE001
        info["her2core"] = "?"
    try:
        import torch
        info["torch"] = torch.__version__
        info["cuda"] = bool(torch.cuda.is_available())
        info["device"] = torch.cuda.get_device_name(0) if info["cuda"] else "CPU"
    except Exception as err:  # noqa: BLE001
        info["torch"] = f"not importable ({type(err).__name__}: {str(err)[:120]})"
        info["cuda"] = False
        info["device"] = "CPU"
    for mod in ("SimpleITK", "sklearn", "timm", "shap", "reportlab"):
        try:
            m = importlib.import_module(mod)
            info[mod] = getattr(m, "__version__", getattr(m, "Version", lambda: "?")()
                                if mod == "SimpleITK" else "?")
        except Exception:  # noqa: BLE001
            info[mod] = "not installed"
    return info


# ----------------------------------------------------------------------------- demo cohort
@st.cache_resource(show_spinner="Preparing the demo cohort ...")
def demo_cohort_root() -> Path:
    """assets/demo_cohort, or (until it ships) a small synthetic cohort in a cache folder."""
    root = ASSETS / "demo_cohort"
    if (root / "cohort.csv").exists():
        return root
    from her2core import synthetic
    cache = Path(os.environ.get("HER2_CACHE", Path.home() / ".cache" / "her2")) / "demo_cohort_app"
    if not (cache / "cohort.csv").exists():
        synthetic.make_cohort(cache, n=8, seed=7, centres=2, modalities="both", overwrite=True)
    return cache


_FILE_NAMES = {"T1": "T1", "T2": "T2", "DCE": "DCE", "US": "US", "mask": "mask",
               "US_mask": "US_mask"}


def _find_file(case_dir: Path, stem: str) -> Path | None:
    for suf in (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".dcm", ".jpg"):
        p = case_dir / f"{stem}{suf}"
        if p.exists():
            return p
    d = case_dir / stem
    return d if d.is_dir() else None


@st.cache_data(show_spinner=False, max_entries=8)
def cohort_table(root: str):
    """The cohort's typed table (pandas, indexed by case_id)."""
    from her2core.cohort import read_cohort
    return read_cohort(root).table.copy()


def case_files(root: str, case_id: str) -> dict[str, str]:
    """The case's image and mask files (her2core.cohort's discovery), by name."""
    from her2core.cohort import read_cohort
    cf = read_cohort(root).files(case_id)
    return {k: str(v) for k, v in cf.present().items()}


@st.cache_data(show_spinner=False, max_entries=256)
def _computed_clinical(root: str, case_id: str) -> dict[str, Any]:
    from her2core.cohort import COMPUTED_COLUMNS, read_cohort
    from her2core.models.workflow import computed_columns
    row = computed_columns(read_cohort(root), list(COMPUTED_COLUMNS), [case_id]).iloc[0]
    return clin.normalise({k: row.get(k) for k in COMPUTED_COLUMNS})


def computed_clinical(root: str, case_id: str, clinical: dict[str, Any]) -> dict[str, Any]:
    """The computed clinical values (DCE kinetics inside the case's ROI file) that the
    cohort row leaves empty (her2core.models.workflow.computed_columns)."""
    from her2core.cohort import COMPUTED_COLUMNS
    if all(not clin.is_missing(clinical.get(k)) for k in COMPUTED_COLUMNS):
        return {}
    vals = _computed_clinical(root, case_id)
    return {k: vals.get(k) for k in COMPUTED_COLUMNS if clin.is_missing(clinical.get(k))}


def demo_case(case_id: str) -> CaseData:
    root = demo_cohort_root()
    table = cohort_table(str(root))
    if case_id not in table.index:
        raise Her2Error(f"case {case_id} is not in the demo cohort", file=root / "cohort.csv")
    row = table.loc[case_id].to_dict()
    files = case_files(str(root), case_id)
    clinical = clin.normalise({k: row.get(k) for k in clin.BY_NAME})
    clinical.update(computed_clinical(str(root), case_id, clinical))
    label = {k: row.get(k) for k in ("her2", "her2_ihc") if k in row}
    return CaseData(case_id=case_id, source="demo", files=files,
                    hashes={k: file_sha256(v) for k, v in files.items() if Path(v).is_file()},
                    clinical=clinical, label=label,
                    note="synthetic demo case (no patient)")


# ----------------------------------------------------------------------------- uploads
UPLOAD_PREFIX = "her2_upload_"
#: session key: the UploadFolder that owns the session's temp folder (removed with the session)
UPLOAD_OWNER_KEY = "upload_owner"
#: session key: temp path -> the name of the file the user chose (for messages)
UPLOAD_NAMES_KEY = "upload_names"
#: upload folders older than this, left by a server that stopped, are swept at start
STALE_UPLOAD_S = 24 * 3600


#: minutes without a rerun after which a session's uploads are deleted (0: never)
UPLOAD_IDLE_MIN_ENV = "HER2_UPLOAD_IDLE_MIN"
DEFAULT_UPLOAD_IDLE_MIN = 120
#: seconds between two passes of the sweeper (ended and idle sessions)
SWEEP_EVERY_S = 5.0


class UploadFolder:
    """A session's temporary upload folder.

    Removed when :meth:`remove` is called, when the object is garbage-collected, and by
    the sweeper (:func:`sweep_session_uploads`): once its session has ended (not active
    for longer than the server keeps a disconnected session to resume it) or after
    ``HER2_UPLOAD_IDLE_MIN`` minutes without a rerun of its session. A session's state is
    not reliably collected when it ends (Streamlit keeps a disconnected session for
    reconnection and drops it without a collection), so the finalizer alone left uploads
    on disk (benchmarks/bench_sessions.py found them there).
    """

    def __init__(self, session_id: str | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX))
        self.session_id = session_id
        self.last_used = time.time()
        self.inactive_since: float | None = None
        self.removed_because: str | None = None
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)
        with _FOLDERS_LOCK:
            _FOLDERS.add(self)

    def touch(self) -> None:
        self.last_used = time.time()

    def remove(self, because: str | None = None) -> None:
        if self._finalizer.alive and because:
            self.removed_because = because
            log.info("upload folder of a session removed: %s", because)
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive and self.path.exists()

    def __deepcopy__(self, memo):   # session-state copies share the one folder
        return self


#: every live UploadFolder of this server (weak: a collected session's goes by itself)
_FOLDERS: "weakref.WeakSet[UploadFolder]" = weakref.WeakSet()
_FOLDERS_LOCK = threading.Lock()


def upload_idle_s() -> float:
    """Idle timeout of a session's uploads (s), from HER2_UPLOAD_IDLE_MIN; 0: none."""
    try:
        return max(float(os.environ.get(UPLOAD_IDLE_MIN_ENV, DEFAULT_UPLOAD_IDLE_MIN)), 0.0) * 60
    except ValueError:
        return DEFAULT_UPLOAD_IDLE_MIN * 60.0


def sweep_session_uploads(is_active, *, grace_s: float, idle_s: float,
                          now: float | None = None) -> list[tuple[str, str]]:
    """Remove the upload folders of ended and idle sessions; [(folder, why)].

    ``is_active(session_id)``: the session is connected (the server's own answer). A
    folder whose session has not been active for ``grace_s`` (the time a disconnected
    session may still come back) goes as "ended"; one not used for ``idle_s`` (> 0)
    goes as "idle".
    """
    now = time.time() if now is None else now
    with _FOLDERS_LOCK:
        folders = [f for f in _FOLDERS if f.alive]
    gone = []
    for f in folders:
        active = True if f.session_id is None else bool(is_active(f.session_id))
        if not active:
            if f.inactive_since is None:
                f.inactive_since = now
            if now - f.inactive_since >= grace_s:
                f.remove("ended")
                gone.append((str(f.path), "ended"))
            continue
        f.inactive_since = None
        if idle_s > 0 and now - f.last_used >= idle_s:
            f.remove("idle")
            gone.append((str(f.path), "idle"))
    return gone


def _runtime():
    try:
        from streamlit import runtime
        return runtime.get_instance() if runtime.exists() else None
    except Exception:  # noqa: BLE001 - bare mode (tests, scripts): no sweeper
        return None


@st.cache_resource(show_spinner=False)
def _session_sweeper() -> "threading.Thread | None":
    """One daemon thread per server: :func:`sweep_session_uploads` every few seconds."""
    rt = _runtime()
    if rt is None:
        return None
    try:
        grace = float(st.get_option("server.disconnectedSessionTTL"))
    except Exception:  # noqa: BLE001
        grace = 120.0

    def loop():
        while True:
            time.sleep(SWEEP_EVERY_S)
            try:
                sweep_session_uploads(rt.is_active_session, grace_s=grace + SWEEP_EVERY_S,
                                      idle_s=upload_idle_s())
            except Exception:  # noqa: BLE001 - never stop sweeping
                log.exception("the upload sweeper failed once")
    t = threading.Thread(target=loop, name="her2-upload-sweeper", daemon=True)
    t.start()
    return t


def _session_id() -> str | None:
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
        ctx = get_script_run_ctx()
        return ctx.session_id if ctx is not None and _runtime() is not None else None
    except Exception:  # noqa: BLE001
        return None


def touch_session_uploads() -> str | None:
    """Called on every rerun: the session is in use (its uploads are not idle). Returns
    why its uploads were removed since the last rerun ("idle", "ended"), once, else None."""
    owner = st.session_state.get(UPLOAD_OWNER_KEY)
    if not isinstance(owner, UploadFolder):
        return None
    if owner.alive:
        owner.touch()
        return None
    why, owner.removed_because = owner.removed_because, None
    return why


def sweep_stale_uploads(max_age_s: float = STALE_UPLOAD_S) -> int:
    """Remove upload folders of sessions that a stopped server could not clean up."""
    n = 0
    now = time.time()
    for d in Path(tempfile.gettempdir()).glob(UPLOAD_PREFIX + "*"):
        try:
            if d.is_dir() and now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        except OSError:
            continue
    return n


@st.cache_resource(show_spinner=False)
def _swept_at_start() -> int:
    return sweep_stale_uploads()


def session_upload_dir() -> Path:
    """The session's temp folder (created on first use, removed when the session ends)."""
    _swept_at_start()
    _session_sweeper()
    owner = st.session_state.get(UPLOAD_OWNER_KEY)
    if not isinstance(owner, UploadFolder) or not owner.alive:
        owner = UploadFolder(_session_id())
        st.session_state[UPLOAD_OWNER_KEY] = owner
    st.session_state["upload_dir"] = str(owner.path)
    return owner.path


def new_case_folder() -> Path:
    """A fresh folder for the files of a case being uploaded (see :func:`adopt_case_folder`)."""
    d = Path(tempfile.mkdtemp(prefix="case_", dir=session_upload_dir()))
    return d


def adopt_case_folder(case: "CaseData") -> None:
    """The case now open owns its upload folder; the replaced case's uploads are removed."""
    old = st.session_state.get("case")
    old_dir = getattr(old, "folder", None)
    if old_dir and old_dir != case.folder:
        discard_folder(old_dir)


def discard_folder(folder: str | Path | None) -> None:
    """Remove an upload folder of this session (and forget its names)."""
    if not folder:
        return
    folder = Path(folder)
    root = session_upload_dir()
    if root not in folder.parents:                     # only ever inside the session folder
        return
    shutil.rmtree(folder, ignore_errors=True)
    names = st.session_state.get(UPLOAD_NAMES_KEY) or {}
    for k in [k for k in names if Path(k) == folder or folder in Path(k).parents]:
        names.pop(k, None)


def _safe_name(name: str) -> str:
    base = Path(name).name
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[-120:] or "upload"


def _remember_name(path: Path, shown: str) -> None:
    names = st.session_state.get(UPLOAD_NAMES_KEY)
    if not isinstance(names, dict):
        names = {}
        st.session_state[UPLOAD_NAMES_KEY] = names
    names[str(path)] = Path(shown).name


def _write_upload(uploaded, data: bytes, sha: str, folder: Path | None) -> Path:
    """The bytes under the user's own (sanitised) file name, one folder per content."""
    d = (folder or session_upload_dir()) / sha[:16]
    d.mkdir(parents=True, exist_ok=True)
    p = d / _safe_name(uploaded.name)
    p.write_bytes(data)
    _remember_name(p, uploaded.name)
    _remember_name(d, uploaded.name)
    return p


def save_upload(uploaded, role: str, folder: Path | None = None) -> tuple[str, str]:
    """Write an st.file_uploader file into the session's temp folder; (path, sha256).

    The file keeps the user's name (messages name it); ``folder``: the case's upload folder.
    """
    data = uploaded.getvalue()
    if not data:
        raise ImageLoadError("the uploaded file is empty", file=uploaded.name,
                             hint="choose the file again")
    sha = hashlib.sha256(data).hexdigest()
    name = _safe_name(uploaded.name)
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise ImageLoadError(f"{uploaded.name!r} is not a supported image file", file=uploaded.name,
                             hint="use NIfTI (.nii/.nii.gz), NRRD, MHA, a DICOM .zip, PNG or JPG")
    return str(_write_upload(uploaded, data, sha, folder)), sha


# ----------------------------------------------------------------------------- messages
#: library hints written for the Python API / CLI -> what to do in the app
_APP_HINTS = (
    (re.compile(r"pass resample=True[^)]*", re.I),
     "draw the ROI on this image in the viewer, or load the mask saved from this image"),
    (re.compile(r",? or pass --overwrite \(overwrite=True in Python\)", re.I), ""),
    (re.compile(r"\bpass overwrite\b", re.I), "choose a new folder"),
)


def user_text(text: str | None) -> str | None:
    """Temp paths of this session's uploads replaced by the user's file names; the session
    folder never shown; API hints said in the app's terms."""
    if not text:
        return text
    names = st.session_state.get(UPLOAD_NAMES_KEY) or {}
    for path in sorted(names, key=len, reverse=True):
        text = text.replace(path, names[path])
    root = st.session_state.get("upload_dir")
    pat = re.compile(re.escape(str(Path(tempfile.gettempdir()))) + r"/" + UPLOAD_PREFIX
                     + r"[^/\s]*(/[^\s,;:()'\"]*)?")
    text = pat.sub(lambda m: Path(m.group(1) or "upload").name, text)
    if root:
        text = text.replace(str(root), "")
    for rx, repl in _APP_HINTS:
        text = rx.sub(repl, text)
    return text


def user_error(err: Her2Error) -> tuple[str, str | None, str | None]:
    """(what is wrong, which file, what to do) of an error, for the page."""
    where = []
    if err.case_id is not None:
        where.append(f"case {err.case_id}")
    if err.file is not None:
        where.append(user_text(err.file))
    return user_text(err.message), ", ".join(where) or None, user_text(err.hint)


# ----------------------------------------------------------------------------- images
#: display attributes of an image built from DICOM series, kept next to the file written
DISPLAY_META = ("window_center", "window_width", "slice_thickness", "series_uid")


def _sidecar(path: str | Path) -> Path:
    return Path(str(path) + ".display.json")


@st.cache_resource(show_spinner=False, max_entries=24)
def _load_image(path: str, sha: str, sequence: str):
    import json
    from her2core.imaging import load_image
    image = load_image(path, sequence=sequence)
    side = _sidecar(path)
    if side.is_file():      # written by save_built_image: the DICOM header's window etc.
        image.meta.update({k: v for k, v in json.loads(side.read_text("utf-8")).items()
                           if k in DISPLAY_META})
    return image


def save_built_image(image, folder: Path, name: str) -> tuple[str, str]:
    """An Image built from DICOM series (series picker) written as MetaImage (exact LPS
    geometry) with its display attributes beside it; (path, sha256)."""
    import json
    from her2core.imaging.io import save_image
    path = Path(folder) / f"{name}.mha"
    save_image(image, path)
    meta = {k: image.meta[k] for k in DISPLAY_META if image.meta.get(k) not in (None, "")}
    if meta:
        _sidecar(path).write_text(json.dumps(meta), encoding="utf-8")
    return str(path), file_sha256(path)


def load_image(path: str, sha: str, sequence: str):
    """Image loaded once per (file hash, sequence); shared read-only. Raises Her2Error."""
    return _load_image(path, sha, sequence)


@st.cache_resource(show_spinner=False, max_entries=24)
def _canonical(path: str, sha: str, sequence: str):
    from her2core.viewer import canonical
    return canonical(_load_image(path, sha, sequence))


def canonical_for(case: CaseData, sequence: str):
    """(Image, Canonical) of one sequence of the case."""
    p, h = case.files[sequence], case.hashes[sequence]
    return _load_image(p, h, sequence), _canonical(p, h, sequence)


def load_mask_array(case: CaseData, sequence: str, path: str, sha: str) -> np.ndarray:
    """Mask file checked against the sequence's grid (her2core.imaging.mask.load_mask:
    dimension, labels, geometry, size), as a canonical bool array."""
    from her2core.imaging.mask import load_mask
    ref, can = canonical_for(case, sequence)
    m = load_mask(path, ref, case_id=case.case_id)
    return can.to_canonical(np.asarray(m.array) > 0)


def mask_image(case: CaseData, sequence: str, mask_canonical: np.ndarray):
    """A canonical ROI as a uint8 mask Image on the sequence's own grid."""
    img, can = canonical_for(case, sequence)
    arr = can.from_canonical(np.asarray(mask_canonical, bool)).astype(np.uint8)
    return img.spatial_template().with_array(arr, sequence="mask", modality="SEG")


# ----------------------------------------------------------------------------- DICOM studies
@st.cache_resource(show_spinner="Reading the series ...", max_entries=8)
def _list_series(path: str, stamp: str):
    from her2core.imaging.series import list_series
    return list_series(path)


def list_series(path: str, stamp: str):
    """The image series of a DICOM zip / folder (her2core.imaging.series), cached by content."""
    return _list_series(path, stamp)


def open_series(path: str, stamp: str, mapping: dict, *, case_id: str, shown_name: str,
                folder: Path, progress=None) -> CaseData:
    """A case from the series a user assigned (series picker): each role's Image written in
    the case's folder; the DICOM source kept for DICOM SEG export / import."""
    from her2core.imaging.series import build_case_series
    built = build_case_series(path, mapping, progress=progress)
    files, hashes, names, dicom = {}, {}, {}, {}
    infos = {s.uid: s for s in list_series(path, stamp)}
    for role, image in built.images.items():
        uids = built.sources.get(role) or []
        phase_uids = built.sources.get("DCE_phases") or []
        if role == "DCE" and not uids and len(phase_uids) > 1:
            uids = [phase_uids[1]]                 # DCE is phase 1 of the phase series
        if role not in SEQUENCES and role != "DCE_phases":
            continue
        if uids and role != "DCE_phases":
            image.meta.setdefault("series_uid", uids[0])
            if uids[0] in infos and infos[uids[0]].n_files == image.shape[0]:
                dicom[role] = (path, uids[0])
        p, h = save_built_image(image, folder, role)
        files[role], hashes[role] = p, h
        desc = ", ".join(f"{infos[u].description or 'series'} #{infos[u].series_number}"
                         for u in uids if u in infos)
        names[role] = f"{shown_name}: {desc}" if desc else shown_name
        _remember_name(Path(p), names[role])
    return CaseData(case_id=case_id, source="DICOM", files=files, hashes=hashes,
                    clinical=clin.normalise({}), names=names, dicom=dicom, folder=str(folder),
                    note="DICOM series: " + "; ".join(f"{r} = {n.split(': ', 1)[-1]}"
                                                      for r, n in names.items()))


# ----------------------------------------------------------------------------- model bundles
BUNDLE_KEY = "bundle_path"          # session: path of the bundle in use
SESSION_BUNDLES_KEY = "bundles"     # session: [BundleChoice] trained or uploaded in this session
SHIPPED_BUNDLES = ("demo_bundle", "demo_bundle_us")


@dataclass(frozen=True)
class BundleChoice:
    path: str
    label: str
    source: str                     # "shipped" | "configured" | "trained here" | "uploaded"


def bundle_choices() -> list[BundleChoice]:
    """The bundles this session can use, the default first."""
    out: list[BundleChoice] = []
    env = os.environ.get("HER2_BUNDLE")
    if env:
        out.append(BundleChoice(str(Path(env)), f"{Path(env).name} (HER2_BUNDLE)", "configured"))
    for name in SHIPPED_BUNDLES:
        d = ASSETS / name
        if (d / "MANIFEST").is_file() and str(d) not in {c.path for c in out}:
            out.append(BundleChoice(str(d), f"{name} (shipped demo)", "shipped"))
    for c in st.session_state.get(SESSION_BUNDLES_KEY, []) or []:
        if Path(c.path, "MANIFEST").is_file() and c.path not in {o.path for o in out}:
            out.append(c)
    return out


def register_bundle(path: str | Path, label: str, source: str, *, select: bool = True) -> None:
    """Offer a bundle trained or uploaded in this session (and use it at once)."""
    c = BundleChoice(str(Path(path)), label, source)
    lst = [b for b in st.session_state.get(SESSION_BUNDLES_KEY, []) or [] if b.path != c.path]
    st.session_state[SESSION_BUNDLES_KEY] = lst + [c]
    if select:
        select_bundle(c.path)


def select_bundle(path: str) -> None:
    st.session_state[BUNDLE_KEY] = str(path)
    st.session_state["prediction"] = None


def _stamp(path: str) -> int:
    f = Path(path) / "MANIFEST"
    return f.stat().st_mtime_ns if f.is_file() else 0


@st.cache_resource(show_spinner="Loading the model bundle ...", max_entries=8)
def _load_bundle(path: str, stamp: int):
    from her2core.bundle import load_bundle
    return load_bundle(path)


@st.cache_resource(show_spinner=False, max_entries=4)
def _predictor(path: str, stamp: int):
    from her2core.predictor import CasePredictor
    return CasePredictor(_load_bundle(path, stamp))


def current_bundle_path() -> str | None:
    choices = bundle_choices()
    want = st.session_state.get(BUNDLE_KEY)
    if want and any(c.path == want for c in choices):
        return want
    return choices[0].path if choices else None


def current_bundle():
    """The session's bundle (verified, read-only, shared), or None when there is none.
    A damaged or foreign bundle raises BundleError (shown by the caller)."""
    path = current_bundle_path()
    return None if path is None else _load_bundle(path, _stamp(path))


def current_predictor():
    """The CasePredictor of the session's bundle (shared by every session using it)."""
    path = current_bundle_path()
    return None if path is None else _predictor(path, _stamp(path))


NO_BUNDLE = ("No model bundle is available: assets/demo_bundle is missing. Train one on the "
             "Cohort page, upload a bundle (.zip) in the sidebar, or set HER2_BUNDLE.")


def upload_bundle(uploaded) -> str:
    """An uploaded bundle zip: extracted safely, verified (checksums, trusted types, nothing
    unpickled), offered to this session and selected. Returns its folder."""
    from her2core.bundle import load_bundle_archive
    path, sha = save_upload_any(uploaded, "bundle", (".zip",))
    dest = session_upload_dir() / f"bundle_{sha[:12]}"
    if dest.exists():
        shutil.rmtree(dest, ignore_errors=True)
    try:
        b = load_bundle_archive(path, dest)
    except Her2Error as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise type(err)(err.message, file=uploaded.name, hint=err.hint) from None
    register_bundle(b.path, f"{uploaded.name} (uploaded)", "uploaded")
    return str(b.path)


def reset_for_tests() -> None:
    """Clear caches (tests)."""
    st.cache_resource.clear()
    st.cache_data.clear()


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------- teaching case
@st.cache_resource(show_spinner=False, max_entries=16)
def _teaching_dir(seed: int, size_mm: float, rim: float, edema: float, irregularity: float) -> str:
    from her2core import synthetic
    case = synthetic.synth_case(seed=int(seed), index=0, centre="A", modalities="mri",
                                shape=(64, 64, 16), size_mm=size_mm, rim=rim, edema=edema,
                                irregularity=irregularity, case_id="teaching")
    d = Path(tempfile.mkdtemp(prefix="her2_teach_"))
    case.write(d)
    import json
    (d / "row.json").write_text(json.dumps({"row": case.row, "truth": case.truth}, default=str))
    return str(d)


def teaching_case(seed: int, size_mm: float, rim: float, edema: float, irregularity: float) -> CaseData:
    """Synthetic teaching case for the phenotype sliders (regenerated per setting, cached)."""
    import json
    d = Path(_teaching_dir(int(seed), round(float(size_mm), 1), round(float(rim), 2),
                           round(float(edema), 2), round(float(irregularity), 2)))
    meta = json.loads((d / "row.json").read_text(encoding="utf-8"))
    files = {k: str(d / f"{k}.nii.gz") for k in ("DCE", "T1", "T2", "mask") if (d / f"{k}.nii.gz").exists()}
    row = meta["row"]
    return CaseData(case_id=f"teaching-s{seed}", source="teaching", files=files,
                    hashes={k: file_sha256(v) for k, v in files.items()},
                    clinical=clin.normalise({k: row.get(k) for k in clin.BY_NAME}),
                    label={"her2": row.get("her2"), "her2_ihc": row.get("her2_ihc")},
                    note="synthetic teaching case: phenotype " + ", ".join(
                        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in meta["truth"]["phenotype"].items()))


# ----------------------------------------------------------------------------- cohort uploads
MAX_COHORT_ZIP_BYTES = 4 * 1024 ** 3


def extract_cohort_zip(uploaded) -> str:
    """Unpack an uploaded cohort zip safely into the session folder; the folder with cohort.csv."""
    from her2core.errors import CohortError
    from her2core.imaging.io import extract_zip
    path, sha = save_upload_any(uploaded, "cohort", (".zip",))
    dest = session_upload_dir() / f"cohort_{sha[:12]}"
    if not (dest / ".done").exists():
        # the same guards as DICOM zips: traversal, links, encryption, declared and real size
        try:
            extract_zip(path, dest, max_bytes=MAX_COHORT_ZIP_BYTES, max_members=200_000)
        except Her2Error as err:   # name the file the user chose, not the session's copy
            shutil.rmtree(dest, ignore_errors=True)
            raise type(err)(err.message, file=uploaded.name, hint=err.hint) from None
        (dest / ".done").write_text("ok", encoding="utf-8")
    hits = sorted(dest.rglob("cohort.csv"), key=lambda p: len(p.parts))
    if not hits:
        raise CohortError("the zip has no cohort.csv", file=uploaded.name,
                          hint="zip a folder laid out as in docs/cohort-format.md")
    return str(hits[0].parent)


def save_upload_any(uploaded, role: str, suffixes: tuple[str, ...]) -> tuple[str, str]:
    data = uploaded.getvalue()
    if not data:
        raise ImageLoadError("the uploaded file is empty", file=uploaded.name)
    name = _safe_name(uploaded.name)
    if not name.lower().endswith(suffixes):
        raise ImageLoadError(f"{name!r} is not a {'/'.join(suffixes)} file", file=uploaded.name)
    sha = hashlib.sha256(data).hexdigest()
    return str(_write_upload(uploaded, data, sha, None)), sha


@st.cache_data(show_spinner="Validating the cohort ...", max_entries=4)
def validate_cohort_cached(root: str, stamp: float):
    """(usable ids, problems as text, notes) of her2core.cohort.validate_cohort."""
    from her2core.cohort import validate_cohort
    rep = validate_cohort(root)
    return rep.usable, [str(p) for p in rep.all_problems()], list(rep.notes)
