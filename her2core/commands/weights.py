"""`python -m her2core weights list|import FILE|download NAME`: pretrained weights on this machine.

* ``list``: for every architecture, the weights file the search finds
  (``--weights-dir``, $HER2_WEIGHTS_DIR, the Hugging Face and torch caches), its
  sha256, or what to do when none is found.
* ``import FILE --arch NAME``: checks that FILE (.safetensors or .pth / .bin / .pt,
  read without unpickling) loads into the architecture, then stores it as
  ``<weights dir>/<arch>.safetensors`` and records both sha256s in weights.json.
* ``download NAME``: fetches timm's pretrained weights through the Hugging Face hub
  (or timm's URL) -- the only network access of the project, and only when run.
"""
from __future__ import annotations

import argparse

NAME = "weights"
HELP = "list, import or download pretrained network weights (never downloads implicitly)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="weights found for each architecture")
    p.add_argument("names", nargs="*", help="architectures (default: every registered one)")
    p.add_argument("--weights-dir", default=None)
    p = sub.add_parser("import", help="check a local weights file and store it")
    p.add_argument("file", help=".safetensors / .pth / .bin / .pt file")
    p.add_argument("--arch", required=True, help="architecture it belongs to (e.g. resnet50)")
    p.add_argument("--weights-dir", default=None, help="target folder (default $HER2_WEIGHTS_DIR)")
    p.add_argument("--overwrite", action="store_true")
    p = sub.add_parser("download", help="download timm's pretrained weights (needs a network)")
    p.add_argument("name", help="architecture (e.g. convnextv2_tiny, resnet101)")
    p.add_argument("--weights-dir", default=None,
                   help="also store a checked copy here (default: only the hub cache)")


def _arch(name: str) -> str:
    from her2core.finetune.nets import arch_info
    return arch_info(name).name


def _line(e) -> str:
    if not e.found:
        return f"{e.name:<28} {e.kind}  -- {e.note}"
    return f"{e.name:<28} {e.kind}  {e.origin:<11} sha256:{e.sha256[:16]}  {e.path}"


def run(args) -> int:
    from her2core.features import weights as W
    if args.action == "list":
        names = [_arch(n) for n in args.names] or None
        for e in W.list_weights(names, weights_dir=args.weights_dir):
            print(_line(e))
        return 0
    if args.action == "import":
        e = W.import_weights(args.file, _arch(args.arch), args.weights_dir,
                             overwrite=args.overwrite)
        print(f"imported {e.name}: {e.path} (sha256:{e.sha256}); {e.note}")
        return 0
    e = W.download_weights(_arch(args.name), args.weights_dir)
    print(f"downloaded {e.name}: {e.path} (sha256:{e.sha256})")
    return 0
