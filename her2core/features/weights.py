"""Pretrained weights: found on local disk only, identified by their sha256.

Where weights are looked for, in order, for a backbone ``name`` with the
spec ``"auto"``:

1. ``weights_dir`` (FeatureConfig.weights_dir) and ``$HER2_WEIGHTS_DIR``:
   ``<name>.safetensors`` (also ``.pth`` / ``.bin`` / ``.pt``), ``<arch>.<tag>.safetensors``,
   or a folder ``<name>/`` holding one weights file;
2. the Hugging Face cache that ``timm`` fills (``$HF_HUB_CACHE``, else
   ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``):
   ``models--timm--<arch>.<tag>/snapshots/<rev>/model.safetensors``;
3. the torch hub cache (``$TORCH_HOME/hub/checkpoints``, else
   ``~/.cache/torch/hub/checkpoints``): the file named as timm's download URL.

Nothing is ever downloaded (``HF_HUB_OFFLINE=1`` is set, and no hub function is
called). A spec may also be an explicit file or folder path. ``"random-init"``
is the only way to get an untrained network: it must be asked for, it is seeded,
and it is recorded as the weights identity ``"random-init"`` so that every
output can say so. Anything else that finds no file raises :class:`Her2Error`
naming the places searched.

Files are read with ``safetensors`` or ``torch.load(weights_only=True)``: no
pickled objects are ever executed.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import Her2Error

from her2core.provenance import file_sha256  # noqa: F401 - the one file-hash helper

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"
AUTO = "auto"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")
#: preferred file names inside a folder (HF / timm conventions)
PREFERRED_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors",
                   "open_clip_pytorch_model.bin")



@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights came from.

    ``identity`` is ``"sha256:<hex>"`` of the file read, or ``"random-init"``.
    """

    identity: str
    path: str | None
    origin: str  # "file", "weights-dir", "hf-cache", "torch-cache", "random-init"
    seed: int | None = None

    @property
    def is_random(self) -> bool:
        return self.identity == RANDOM_INIT

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "path": self.path, "origin": self.origin,
                "seed": self.seed}


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")




# ------------------------------------------------------------------ locations
def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def torch_hub_checkpoints() -> Path:
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "torch" / "hub" / "checkpoints"
    return Path.home() / ".cache" / "torch" / "hub" / "checkpoints"


def weights_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    dirs = []
    if weights_dir:
        dirs.append(Path(weights_dir))
    if os.environ.get("HER2_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["HER2_WEIGHTS_DIR"]))
    return dirs


def _weights_in_folder(folder: Path, names: list[str]) -> Path | None:
    """A single weights file inside ``folder`` (preferred names first)."""
    if not folder.is_dir():
        return None
    snapshots = folder / "snapshots"
    if snapshots.is_dir():  # an HF repo folder: models--timm--x.y
        return _weights_in_hf_repo(folder)
    cands = [folder / n for n in PREFERRED_FILES]
    cands += [folder / f"{n}{suf}" for n in names for suf in WEIGHT_SUFFIXES]
    for cand in cands:
        if cand.is_file():
            return cand
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    safet = [p for p in found if p.suffix == ".safetensors"]
    pick = safet or found
    if len(pick) == 1:
        return pick[0]
    if len(pick) > 1:
        raise Her2Error(f"several weights files in the folder: {[p.name for p in pick]}",
                        file=folder, hint="give the file itself, or keep one file per folder")
    return None


def _weights_in_hf_repo(repo: Path) -> Path | None:
    snaps = repo / "snapshots"
    order: list[Path] = []
    ref = repo / "refs" / "main"
    if ref.is_file():
        order.append(snaps / ref.read_text(encoding="utf-8").strip())
    order += sorted(p for p in snaps.iterdir() if p.is_dir()) if snaps.is_dir() else []
    for snap in order:
        for n in PREFERRED_FILES:
            if (snap / n).is_file():
                return snap / n
    return None


def candidate_locations(arch: str, tag: str | None, hf_hub_id: str | None, url: str | None,
                        weights_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(origin, path) pairs searched for weights, in order (files or folders)."""
    full = f"{arch}.{tag}" if tag else arch
    stems = [full, arch] if tag else [arch]
    cands: list[tuple[str, Path]] = []
    for d in weights_dirs(weights_dir):
        for stem in stems:
            for suf in WEIGHT_SUFFIXES:
                cands.append(("weights-dir", d / f"{stem}{suf}"))
            cands.append(("weights-dir", d / stem))
            cands.append(("weights-dir", d / f"models--timm--{stem}"))
    hub = hf_hub_cache()
    if hf_hub_id:
        cands.append(("hf-cache", hub / ("models--" + hf_hub_id.replace("/", "--"))))
    if url:
        cands.append(("torch-cache", torch_hub_checkpoints() / os.path.basename(url.split("?")[0])))
    return cands


def resolve_weights(name: str, spec: str | None, *, arch: str | None = None, tag: str | None = None,
                    hf_hub_id: str | None = None, url: str | None = None,
                    weights_dir: str | Path | None = None) -> tuple[Path | None, str]:
    """Find the weights file for ``name`` under ``spec``; returns (path or None, origin).

    None means random initialisation, and is returned only for ``"random-init"``.
    """
    _offline()
    spec = AUTO if spec in (None, "", AUTO) else str(spec)
    if spec == RANDOM_INIT:
        return None, RANDOM_INIT
    arch = arch or name
    if spec != AUTO:
        p = Path(spec).expanduser()
        if p.is_file():
            return p, "file"
        if p.is_dir():
            f = _weights_in_folder(p, [name, arch])
            if f is None:
                raise Her2Error(f"no weights file for backbone {name} in this folder",
                                file=p, hint="put model.safetensors (or a .pth / .bin) there")
            return f, "file"
        raise Her2Error(f"weights for backbone {name} not found", file=p,
                        hint=f"give an existing .safetensors / .pth / .bin file or folder, "
                             f"'auto', or '{RANDOM_INIT}'")
    cands = candidate_locations(arch, tag, hf_hub_id, url, weights_dir)
    for origin, p in cands:
        if p.is_file():
            return p, origin
        if p.is_dir():
            f = _weights_in_folder(p, [name, arch])
            if f is not None:
                return f, origin
    # an HF cache entry for another tag of the same architecture
    hub = hf_hub_cache()
    if hub.is_dir():
        for repo in sorted(hub.glob(f"models--timm--{arch}.*")):
            f = _weights_in_hf_repo(repo)
            if f is not None:
                log.warning("weights for %s: default tag not cached, using %s", name, repo.name)
                return f, "hf-cache"
    first_dir = weights_dirs(weights_dir)[0] if weights_dirs(weights_dir) else Path("<weights_dir>")
    places = list(dict.fromkeys(str(p) for _, p in cands))
    shown = "; ".join(places if len(places) <= 4 else places[:1] + ["..."] + places[-2:]) \
        or "nothing: no weights_dir / HER2_WEIGHTS_DIR set and no hub cache entry for this model"
    raise Her2Error(
        f"no pretrained weights found for backbone {name} (searched: {shown})",
        hint=(f"put the file at {first_dir / (name + '.safetensors')} (or set weights_dir / "
              f"HER2_WEIGHTS_DIR" + (f", or copy the timm Hugging Face cache to {hub}"
                                     if hf_hub_id else "") + "); nothing is "
              f"downloaded. To run with untrained weights, choose weights='{RANDOM_INIT}' explicitly"))


# ------------------------------------------------------------------ reading
def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Tensors of a .safetensors / .pth / .bin / .pt file (no pickle execution)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd: Any = load_file(str(path), device="cpu")
        else:
            import torch
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled objects refused, ...
        raise Her2Error(f"cannot read weights file: {type(exc).__name__}: {str(exc)[:300]}",
                        file=path, hint="use a .safetensors file or a plain state_dict saved "
                                        "with torch.save(model.state_dict())") from exc
    if isinstance(sd, Mapping):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model", "net", "module"):
            inner = sd.get(key)
            if isinstance(inner, Mapping) and inner:
                sd = inner
                break
    if not isinstance(sd, Mapping):
        raise Her2Error("weights file does not hold a state_dict", file=path)
    out = {}
    for k, v in sd.items():
        k = str(k)
        for pre in ("module.", "_orig_mod.", "model."):
            if k.startswith(pre):
                k = k[len(pre):]
        out[k] = v
    return out


def apply_state_dict(model: Any, state_dict: dict[str, Any], *, name: str, path: str | Path,
                     classifier: str | tuple[str, ...] | None = None) -> None:
    """Load ``state_dict`` into ``model``; every model tensor must be provided.

    The timm checkpoint filter of the model's family is applied when the keys do
    not match as they are (original torchvision / Google checkpoints), and the
    classifier head (absent with num_classes=0) is dropped.
    """
    import torch
    model_sd = model.state_dict()
    needed = {k for k in model_sd if not k.endswith("num_batches_tracked")}
    if not needed <= set(state_dict):
        fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if fn is not None:
            try:
                state_dict = fn(dict(state_dict), model)
            except Exception as exc:  # the filter did not apply; report below
                log.debug("checkpoint_filter_fn for %s failed: %s", name, exc)
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    drop = {f"{h}.{s}" for h in heads for s in ("weight", "bias")} - set(model_sd)
    sd = {k: v for k, v in state_dict.items() if k not in drop}
    missing = sorted(needed - set(sd))
    wrong = sorted(k for k in needed & set(sd)
                   if tuple(getattr(sd[k], "shape", ())) != tuple(model_sd[k].shape))
    if missing or wrong:
        what = []
        if missing:
            what.append(f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})")
        if wrong:
            k = wrong[0]
            what.append(f"{len(wrong)} tensors of the wrong shape (e.g. {k}: "
                        f"{tuple(sd[k].shape)} vs {tuple(model_sd[k].shape)})")
        raise Her2Error(f"weights file does not fit backbone {name}: " + "; ".join(what),
                        file=path, hint=f"use a checkpoint of the {name} architecture")
    unexpected = sorted(set(sd) - set(model_sd))
    if unexpected:
        log.warning("weights for %s: %d unused tensors ignored (e.g. %s)", name, len(unexpected),
                    ", ".join(unexpected[:3]))
    sd = {k: v for k, v in sd.items() if k in model_sd}
    with torch.no_grad():
        model.load_state_dict(sd, strict=False)


def save_state_dict(model: Any, path: str | Path) -> Path:
    """Write a model's weights as .safetensors (for users preparing weights, and tests)."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    return path


# ------------------------------------------------------------------ the `weights` command
# Listing, importing and (only when a user asks) downloading pretrained weights.
# Nothing here runs implicitly: feature extraction and fine-tuning only search.

MANIFEST_NAME = "weights.json"


@dataclass
class WeightsEntry:
    """What was found (or imported / downloaded) for one architecture."""

    name: str
    kind: str                       # "2d" | "3d"
    found: bool
    path: str | None = None
    origin: str | None = None       # "weights-dir", "hf-cache", "torch-cache", "file"
    sha256: str | None = None
    size_bytes: int | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)


def _arch_sources(name: str) -> tuple[str, str | None, str | None, str | None, str]:
    """(arch, tag, hf_hub_id, url, kind) of a backbone name (timm's default pretrained tag)."""
    from .backbones import get_spec, split_name
    spec = get_spec(name)
    arch, tag, _ = split_name(name)
    if spec.kind != "2d":
        return arch, None, None, None, spec.kind
    try:
        from timm.models import get_pretrained_cfg
        cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    except Exception:  # noqa: BLE001 - a model without pretrained configs
        cfg = None
    if cfg is None:
        return arch, tag, None, None, spec.kind
    return arch, (tag or getattr(cfg, "tag", None)), getattr(cfg, "hf_hub_id", None), \
        (getattr(cfg, "url", None) or None), spec.kind


def list_weights(names: list[str] | None = None,
                 weights_dir: str | Path | None = None) -> list[WeightsEntry]:
    """For each architecture (default: every registered backbone), the weights the
    search (module docstring) finds, with sha256; nothing is downloaded."""
    from .backbones import known_backbones
    _offline()
    out = []
    for name in names or known_backbones():
        arch, tag, hub, url, kind = _arch_sources(name)
        try:
            path, origin = resolve_weights(name, AUTO, arch=arch, tag=tag, hf_hub_id=hub, url=url,
                                           weights_dir=weights_dir)
        except Her2Error:
            note = ("weights-dir only (no download source): import a MONAI / MedicalNet "
                    "resnet18 (spatial_dims=3, 1 channel, shortcut B) checkpoint"
                    if kind == "3d" else f"not found; `weights download {name}` on a machine "
                                         f"with a network, or `weights import FILE --arch {name}`")
            out.append(WeightsEntry(name, kind, False, note=note))
            continue
        out.append(WeightsEntry(name, kind, True, str(path), origin, file_sha256(path),
                                Path(path).stat().st_size))
    return out


def target_weights_dir(weights_dir: str | Path | None = None) -> Path:
    """The folder `weights import` / `download` write to: ``weights_dir``, else
    $HER2_WEIGHTS_DIR."""
    dirs = weights_dirs(weights_dir)
    if not dirs:
        raise Her2Error("no weights folder chosen",
                        hint="give --weights-dir DIR or set HER2_WEIGHTS_DIR (it is searched "
                             "by feature extraction and fine-tuning)")
    return dirs[0]


def _record(folder: Path, name: str, entry: dict[str, Any]) -> None:
    import json
    import os
    import time
    p = folder / MANIFEST_NAME
    data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    entry = dict(entry, recorded=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    data[name] = entry
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, p)


def check_weights(file: str | Path, name: str):
    """Load ``file`` into architecture ``name``; Her2Error naming the file when it does not fit.

    Returns the backbone (its model holds the weights, in the architecture's own key layout).
    """
    from .backbones import create_backbone
    p = Path(file)
    if not p.is_file():
        raise Her2Error("weights file not found", file=p)
    if p.suffix not in WEIGHT_SUFFIXES:
        raise Her2Error(f"not a weights file (expected {', '.join(WEIGHT_SUFFIXES)})", file=p)
    bb = create_backbone(name, str(p), device="cpu", amp=False)
    require_architecture(bb.model, p, name, head_names(bb.model))
    return bb


def head_names(model: Any) -> tuple[str, ...]:
    """Classifier module names of a backbone (dropped from checkpoints on loading)."""
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    heads = cfg.get("classifier") or "fc"
    return (heads,) if isinstance(heads, str) else tuple(heads)


def import_weights(file: str | Path, name: str, weights_dir: str | Path | None = None, *,
                   overwrite: bool = False) -> WeightsEntry:
    """Check that ``file`` (.safetensors / .pth / .bin / .pt) loads into ``name``, then
    store it as ``<weights dir>/<arch[.tag]>.safetensors`` (sha256 of source and stored
    file recorded in ``weights.json`` there)."""
    from .backbones import get_spec, split_name
    spec = get_spec(name)
    arch, tag, _ = split_name(name)
    folder = target_weights_dir(weights_dir)
    bb = check_weights(file, name)
    stem = f"{arch}.{tag}" if tag else arch
    dst = folder / f"{stem}.safetensors"
    if dst.exists() and not overwrite:
        raise Her2Error(f"weights for {stem} are already there", file=dst,
                        hint="remove the file first, or import with --overwrite")
    import torch
    state = bb.model.state_dict()     # the architecture's own key layout (no classifier)
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file
    tmp = dst.with_name(dst.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()
               if isinstance(v, torch.Tensor)}, str(tmp))
    import os
    os.replace(tmp, dst)
    sha = file_sha256(dst)
    _record(folder, stem, {"file": dst.name, "sha256": sha, "architecture": name,
                           "source_file": Path(file).name, "source_sha256": file_sha256(file)})
    log.info("imported weights for %s: %s (sha256 %s)", name, dst, sha[:12])
    return WeightsEntry(name, spec.kind, True, str(dst), "weights-dir", sha, dst.stat().st_size,
                        note=f"from {Path(file).name} (sha256 {file_sha256(file)[:12]})")


class _online:
    """Network access for huggingface_hub within a `weights download` call only."""

    def __enter__(self):
        import os
        self._env = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "0"
        try:
            import huggingface_hub.constants as c
            self._const = c.HF_HUB_OFFLINE
            c.HF_HUB_OFFLINE = False
        except ImportError:  # pragma: no cover - timm requires huggingface_hub
            self._const = None
        return self

    def __exit__(self, *exc):
        import os
        if self._env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = self._env
        if self._const is not None:
            import huggingface_hub.constants as c
            c.HF_HUB_OFFLINE = self._const
        _offline()


def download_weights(name: str, weights_dir: str | Path | None = None) -> WeightsEntry:
    """Download ``name``'s default pretrained weights (timm's Hugging Face repo, else its URL)
    into the cache the search reads, check that they load, and return the entry.

    Only the `weights download` command calls this; it needs a network.
    """
    arch, tag, hub, url, kind = _arch_sources(name)
    if kind == "3d" or (not hub and not url):
        raise Her2Error(f"no download source known for {name}",
                        hint=f"get a checkpoint yourself and run "
                             f"`weights import FILE --arch {name}`")
    path: Path | None = None
    with _online():
        if hub:
            from huggingface_hub import hf_hub_download
            last: Exception | None = None
            for fname in ("model.safetensors", "pytorch_model.bin"):
                try:
                    path = Path(hf_hub_download(hub, filename=fname, cache_dir=str(hf_hub_cache())))
                    break
                except Exception as exc:  # noqa: BLE001 - next file name, then report
                    last = exc
            if path is None and not url:
                raise Her2Error(f"download of {hub} failed: {type(last).__name__}: "
                                f"{str(last)[:200]}", hint="check the network and the name")
        if path is None and url:
            import torch
            dst = torch_hub_checkpoints() / Path(url.split("?")[0]).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(url, str(dst), progress=False)
            except Exception as exc:  # noqa: BLE001 - network errors in one line
                raise Her2Error(f"download of {url} failed: {type(exc).__name__}: "
                                f"{str(exc)[:200]}", hint="check the network") from exc
            path = dst
    check_weights(path, name)
    if weights_dir or os.environ.get("HER2_WEIGHTS_DIR"):
        return import_weights(path, name, weights_dir, overwrite=True)
    return WeightsEntry(name, kind, True, str(path), "hf-cache" if hub else "torch-cache",
                        file_sha256(path), Path(path).stat().st_size)


def foreign_tensors(model: Any, path: str | Path, classifier: str | tuple[str, ...] | None = None
                    ) -> list[str]:
    """Tensors of the file at ``path`` that ``model`` does not have (classifier heads aside).

    :func:`apply_state_dict` accepts a superset of the model's tensors (e.g. a
    ResNet34 file holds every ResNet18 tensor); importing or fine-tuning from a
    file asks for the architecture itself, so any extra tensor means another one.
    """
    sd = read_state_dict(path)
    keys = set(model.state_dict())
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())

    def extra(d):
        return sorted(k for k in d if k not in keys and not any(
            k == h or k.startswith(h + ".") for h in heads))

    out = extra(sd)
    if out:
        fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if fn is not None:
            try:
                out = extra(fn(dict(sd), model))
            except Exception:  # noqa: BLE001 - the filter does not apply: keep the raw list
                pass
    return out


def require_architecture(model: Any, path: str | Path, name: str,
                         classifier: str | tuple[str, ...] | None = None) -> None:
    """Her2Error naming the file when it holds tensors of another architecture."""
    extra = foreign_tensors(model, path, classifier)
    if extra:
        raise Her2Error(f"weights file is for another architecture than {name}: {len(extra)} "
                        f"tensors that {name} does not have (e.g. {', '.join(extra[:3])})",
                        file=path, hint=f"use a checkpoint of the {name} architecture")
