"""Provenance helpers used by every result: file digests and library versions (one each).

* :func:`file_sha256` - sha256 of a file's bytes (memoised on path, size and mtime), or of
  a folder (a DICOM series) as the digest of its files' relative names and digests;
* :func:`bytes_sha256` - of bytes in memory (uploads);
* :func:`library_versions` - installed versions of the named packages (the bundle's model
  card, the feature cache key, the radiomics settings and the app's About box).
"""
from __future__ import annotations

import hashlib
import platform
from functools import lru_cache
from pathlib import Path

__all__ = ["file_sha256", "bytes_sha256", "library_versions"]

_FILE_HASHES: dict[tuple[str, int, int], str] = {}

#: import name -> distribution name where they differ
_DIST = {"sklearn": "scikit-learn", "radiomics": "pyradiomics", "pywt": "PyWavelets",
         "skops": "skops", "SimpleITK": "SimpleITK"}


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 hex of a file, or of a folder's files (relative name + digest, sorted)."""
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode())
            h.update(file_sha256(f, chunk).encode())
        return h.hexdigest()
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=64)
def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    if name == "python":
        return platform.python_version()
    if name == "her2core":
        from her2core import __version__
        return __version__
    if name == "SimpleITK":
        try:
            import SimpleITK
            return str(SimpleITK.Version_VersionString())
        except ImportError:
            return None
    try:
        return version(_DIST.get(name, name))
    except PackageNotFoundError:
        return None


def library_versions(*names: str) -> dict[str, str]:
    """{name: version} of the named packages that are installed (import names)."""
    out = {}
    for n in names:
        v = _version(n)
        if v is not None:
            out[n] = v
    return out
