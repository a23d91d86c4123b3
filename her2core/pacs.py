"""A PACS over DICOMweb (dicomweb-client): search studies (QIDO-RS), retrieve series (WADO-RS)
de-identified into a folder for the series picker, store a DICOM SEG back (STOW-RS).

Everything retrieved goes through :func:`her2core.deid.deidentify_dataset` (the PS3.15
Basic Profile: identifying attributes removed, UIDs replaced by one-way hashes, so a
study's series stay together) before it touches the disk. Two retention options of
the profile are applied on top so that the series picker still works: *clean
descriptors* (SeriesDescription kept, with any identifier seen in the study
redacted) and *retain temporal information* for times of day only (AcquisitionTime,
SeriesTime, ContentTime; dates are removed), which order DCE phases. Type-2
attributes the profile removed are put back empty, so the files stay valid DICOM
(a SEG can be made from them).

Errors a user can cause -- an unreachable server, one that refuses (HTTP 401 / 403 /
404 / 5xx), a study that does not exist or holds no image series -- raise
:class:`PacsError` with one line naming the server.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pydicom

from her2core import deid
from her2core.errors import Her2Error

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], Any]

#: modalities of objects that hold no image to segment (skipped on fetch)
NON_IMAGE_MODALITIES = frozenset({"SR", "SEG", "RTSTRUCT", "KO", "PR", "REG", "RTPLAN", "DOC"})
_RETAINED = ("SeriesDescription", "AcquisitionTime", "SeriesTime", "ContentTime")
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "AccessionNumber", "StudyID")
_MAPPED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
#: in a fetched folder: de-identified UID -> the server's UID (no names, IDs or dates)
UID_MAP_NAME = "uid_map.json"
_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                  "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName",
                  "StudyDescription")
_DATE_RANGE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")


class PacsError(Her2Error):
    """The DICOMweb server cannot be reached, refuses, or has no such data."""


@dataclass
class StudyInfo:
    """One study found by :func:`find_studies` (no patient name; the ID only if asked)."""

    study_uid: str
    date: str | None
    modalities: list[str]
    description: str | None
    n_series: int | None
    n_instances: int | None = None

    def line(self) -> str:
        """StudyInstanceUID, date, modalities, description, number of series (tab separated)."""
        return "\t".join([self.study_uid, self.date or "-", "/".join(self.modalities) or "-",
                          self.description or "-",
                          str(self.n_series) if self.n_series is not None else "-"])

    def to_dict(self) -> dict:
        return {"study_uid": self.study_uid, "date": self.date, "modalities": self.modalities,
                "description": self.description, "n_series": self.n_series,
                "n_instances": self.n_instances}


@dataclass
class RemoteSeries:
    uid: str
    modality: str | None
    description: str | None
    number: int | None
    n_instances: int | None

    @property
    def is_image(self) -> bool:
        return (self.modality or "") not in NON_IMAGE_MODALITIES


@dataclass
class FetchResult:
    """A retrieved study: de-identified files under ``out_dir``, one folder per series."""

    out_dir: Path
    study_uid: str                       # as on the server
    series: list[dict] = field(default_factory=list)   # server uid -> local folder, files
    n_files: int = 0
    skipped: list[str] = field(default_factory=list)    # non-image series left out
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "study_uid": self.study_uid, "series": self.series,
                "n_files": self.n_files, "skipped": self.skipped, "seconds": self.seconds}


# ============================================================ client
def connect(url: str, *, timeout: float = 20.0, headers: dict[str, str] | None = None):
    """A dicomweb-client DICOMwebClient for ``url`` (the DICOMweb root, e.g.
    http://host:8042/dicom-web). HTTP basic credentials may be given in the URL."""
    from dicomweb_client.api import DICOMwebClient
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)   # one INFO line per request
    if not re.match(r"^https?://", str(url or "")):
        raise PacsError(f"not a DICOMweb URL: {url!r}",
                        hint="give the server's DICOMweb root, e.g. http://host:8042/dicom-web")
    client = DICOMwebClient(url=url.rstrip("/"), headers=headers, timeout=timeout)
    # dicomweb-client retries every failed request 5 times with 1-16 s back-off (half a
    # minute for a wrong URL); two tries 0.2 s apart keep a user's mistake quick
    client.set_http_retry_params(retry=True, max_attempts=2, wait_exponential_multiplier=200)
    return client


def _shown(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)          # never print credentials


def _call(url: str, what: str, fn, *args, **kwargs):
    """Run a client call, turning transport and HTTP failures into one-line PacsErrors."""
    import requests
    try:
        return fn(*args, **kwargs)
    except requests.exceptions.ConnectionError:
        raise PacsError(f"cannot reach the DICOMweb server {_shown(url)} ({what})",
                        hint="check the URL and that the server is running") from None
    except requests.exceptions.Timeout:
        raise PacsError(f"the DICOMweb server {_shown(url)} did not answer in time ({what})",
                        hint="try again, or ask for fewer series") from None
    except requests.exceptions.HTTPError as exc:
        code = getattr(exc.response, "status_code", None)
        reason = {401: "needs credentials", 403: "refuses access", 404: "has no such resource",
                  400: "rejected the request"}.get(code, "answered with an error")
        raise PacsError(f"the DICOMweb server {_shown(url)} {reason} (HTTP {code}) while {what}",
                        hint=("check the user name and password" if code in (401, 403) else
                              "check the UIDs and the search values")) from None
    except requests.exceptions.RequestException as exc:
        raise PacsError(f"DICOMweb request to {_shown(url)} failed while {what}: "
                        f"{type(exc).__name__}") from None


def _value(item: dict, tag: str):
    v = item.get(tag, {}).get("Value")
    if not v:
        return None
    first = v[0]
    if isinstance(first, dict) and "Alphabetic" in first:
        return first["Alphabetic"]
    return first


def _values(item: dict, tag: str) -> list:
    return list(item.get(tag, {}).get("Value") or [])


def _register(items: Iterable[dict]) -> None:
    """Identifiers in QIDO answers are registered so that logs redact them."""
    found = []
    for item in items:
        for tag in ("00100010", "00100020", "00080050", "00100030", "00080080"):
            v = _value(item, tag)
            if v:
                found.append(str(v))
                if "^" in str(v):
                    found.extend(p for p in str(v).split("^") if p)
    deid.register_identifiers(found)


# ============================================================ QIDO
def find_studies(url: str, *, patient_id: str | None = None, study_date: str | None = None,
                 limit: int = 200, client=None) -> list[StudyInfo]:
    """Studies on the server matching a patient ID and / or a date or range
    (``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD``, ``YYYYMMDD-``)."""
    filters: dict[str, str] = {}
    if patient_id:
        filters["PatientID"] = str(patient_id)
        deid.register_identifiers([str(patient_id)])
    if study_date:
        m = _DATE_RANGE.match(study_date.strip())
        if not m or not (m.group(1) or m.group(3)) or (m.group(1) and m.group(3) and not m.group(2)):
            raise PacsError(f"study date {study_date!r} is not YYYYMMDD or a range "
                            "YYYYMMDD-YYYYMMDD")
        filters["StudyDate"] = study_date.strip()
    client = client or connect(url)
    items = _call(url, "searching studies", client.search_for_studies, search_filters=filters,
                  limit=limit, fields=["StudyDate", "ModalitiesInStudy", "StudyDescription",
                                       "NumberOfStudyRelatedSeries",
                                       "NumberOfStudyRelatedInstances"])
    _register(items)
    out = []
    for it in items:
        n_series = _value(it, "00201206")
        n_inst = _value(it, "00201208")
        out.append(StudyInfo(study_uid=str(_value(it, "0020000D")), date=_value(it, "00080020"),
                             modalities=[str(v) for v in _values(it, "00080061")],
                             description=_value(it, "00081030"),
                             n_series=int(n_series) if n_series is not None else None,
                             n_instances=int(n_inst) if n_inst is not None else None))
    out.sort(key=lambda s: (s.date or "", s.study_uid))
    return out


def find_series(url: str, study_uid: str, *, client=None) -> list[RemoteSeries]:
    """The series of one study (PacsError when the study does not exist)."""
    client = client or connect(url)
    items = _call(url, f"listing the series of study {study_uid}", client.search_for_series,
                  study_instance_uid=study_uid,
                  fields=["Modality", "SeriesDescription", "SeriesNumber",
                          "NumberOfSeriesRelatedInstances"])
    if not items:
        raise PacsError(f"study {study_uid} not found on {_shown(url)}",
                        hint="search with `pacs find` for its StudyInstanceUID")
    _register(items)
    out = []
    for it in items:
        n = _value(it, "00201209")
        num = _value(it, "00200011")
        out.append(RemoteSeries(uid=str(_value(it, "0020000E")), modality=_value(it, "00080060"),
                                description=_value(it, "0008103E"),
                                number=int(num) if num is not None else None,
                                n_instances=int(n) if n is not None else None))
    out.sort(key=lambda s: (s.number if s.number is not None else 10 ** 9, s.uid))
    return out


# ============================================================ WADO
def deidentify_retrieved(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The upload de-identification (deid.deidentify_dataset) with the series picker's
    retention options (module docstring), in place."""
    ids = deid.identifiers_of(ds)
    deid.register_identifiers(ids)
    kept = {}
    for kw in _RETAINED:
        if kw in ds and ds.data_element(kw).value not in (None, ""):
            value = str(ds.data_element(kw).value)
            kept[kw] = deid.redact(value, ids | deid.registered_identifiers()) \
                if kw == "SeriesDescription" else value
    deid.deidentify_dataset(ds)
    for kw, value in kept.items():
        setattr(ds, kw, value)
    for kw in _TYPE2:
        if kw not in ds:
            setattr(ds, kw, "")
    ds.DeidentificationMethod = "PS3.15 Basic Profile + Clean Descriptors + Retain Times"
    return ds


def fetch_study(url: str, study_uid: str, out_dir: str | os.PathLike, *,
                series: Sequence[str] | None = None, client=None, overwrite: bool = False,
                progress: ProgressFn | None = None) -> FetchResult:
    """Retrieve a study's image series (or the ones named) de-identified into ``out_dir``.

    Files are written as ``out_dir/S<nn>_<modality>/<k>.dcm``, ready for
    :func:`her2core.imaging.series.list_series`, with ``uid_map.json``: the de-identified
    UIDs and the server's (UIDs only, no names, IDs or dates), with which
    :func:`store_instances` files a SEG made on these series back into the server's
    study. Delete it to cut that link. Non-image series (SR, SEG, ...) are
    skipped. Raises PacsError for a study without image series, an unknown series,
    or a server failure; a non-empty ``out_dir`` is refused unless ``overwrite``.
    On failure nothing half-written is left in ``out_dir``.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    report = progress or (lambda done, total, message: None)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise PacsError(f"{out_dir} is not empty", file=out_dir,
                        hint="give a new folder, or pass --overwrite (overwrite=True in Python)")
    client = client or connect(url)
    remote = find_series(url, study_uid, client=client)
    if series:
        known = {s.uid: s for s in remote}
        missing = [u for u in series if u not in known]
        if missing:
            raise PacsError(f"series {', '.join(missing)} not in study {study_uid}",
                            hint="the study's series: " + ", ".join(known))
        chosen = [known[u] for u in series]
    else:
        chosen = remote
    images = [s for s in chosen if s.is_image]
    skipped = [s.uid for s in chosen if not s.is_image]
    if not images:
        raise PacsError(f"study {study_uid} has no image series "
                        f"({', '.join(sorted({s.modality or '?' for s in chosen}))} only)",
                        hint="choose a study with MR or US images")
    total = sum(s.n_instances or 0 for s in images) or len(images)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = FetchResult(out_dir=out_dir, study_uid=study_uid, skipped=skipped)
    uid_map: dict[str, str] = {}
    done = 0
    try:
        for i, s in enumerate(images, 1):
            folder = f"S{i:02d}_{re.sub(r'[^A-Za-z0-9]', '', s.modality or 'OT') or 'OT'}"
            (tmp / folder).mkdir()
            n = 0
            datasets = _call(url, f"retrieving series {s.uid}", client.iter_series,
                             study_instance_uid=study_uid, series_instance_uid=s.uid)
            it = iter(datasets)
            while True:
                ds = _call(url, f"retrieving series {s.uid}", next, it, None)
                if ds is None:
                    break
                before = {kw: str(ds.get(kw, "")) for kw in _MAPPED_UIDS}
                deidentify_retrieved(ds)
                for kw, old in before.items():
                    new = str(ds.get(kw, ""))
                    if old and new and new != old:
                        uid_map[new] = old
                n += 1
                ds.save_as(str(tmp / folder / f"{n:05d}.dcm"), enforce_file_format=False)
                done += 1
                if done % 10 == 0:
                    report(done, total, f"series {i}/{len(images)}")
            if n == 0:
                raise PacsError(f"series {s.uid} of study {study_uid} returned no instances",
                                hint="the server may hold it offline; try again later")
            result.series.append({"server_uid": s.uid, "folder": folder, "files": n,
                                  "modality": s.modality, "description": s.description})
            result.n_files += n
        (tmp / UID_MAP_NAME).write_text(json.dumps(
            {"server": _shown(url), "study_uid": study_uid, "uids": uid_map}, indent=0),
            encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(done, total, "done")
    result.seconds = time.perf_counter() - t0
    log.info("retrieved %d files in %d series from %s (de-identified)", result.n_files,
             len(result.series), _shown(url))
    return result


# ============================================================ STOW
def store_instances(url: str, files: Sequence[str | os.PathLike], *, client=None,
                    relink: str | os.PathLike | None = None) -> int:
    """Store DICOM files (e.g. a DICOM SEG) on the server; returns how many were stored.

    ``relink``: a folder written by :func:`fetch_study` (or its uid_map.json). The files
    were made on de-identified copies; their UIDs are mapped back to the server's and
    the patient / study attributes are taken from the server's study (in memory only,
    nothing re-identified is written to disk), so the SEG joins the original study
    and references the original series.
    """
    client = client or connect(url)
    datasets = []
    for f in files:
        try:
            datasets.append(pydicom.dcmread(str(f)))
        except Exception as exc:  # noqa: BLE001
            raise PacsError(f"not a readable DICOM file ({type(exc).__name__})", file=f) from None
    if relink is not None:
        mapping = _read_uid_map(relink)
        study = _study_attributes(url, mapping["study_uid"], client)
        for ds in datasets:
            _map_uids(ds, mapping["uids"])
            if str(ds.StudyInstanceUID) != mapping["study_uid"]:
                raise PacsError("the file does not belong to the fetched study",
                                file=getattr(ds, "filename", None),
                                hint="relink only results made on that study's series")
            for kw, value in study.items():
                setattr(ds, kw, value)
            ds.PatientIdentityRemoved = "NO"
            if "DeidentificationMethod" in ds:
                del ds["DeidentificationMethod"]
    answer = _call(url, "storing instances", client.store_instances, datasets=datasets)
    failed = list(getattr(answer, "FailedSOPSequence", []) or [])
    if failed:
        raise PacsError(f"the server refused {len(failed)} of {len(datasets)} instances",
                        hint="it may not accept this SOP class")
    return len(datasets) - len(failed)


def _read_uid_map(path) -> dict:
    p = Path(path)
    p = p / UID_MAP_NAME if p.is_dir() else p
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        assert isinstance(data.get("uids"), dict) and data.get("study_uid")
    except (OSError, ValueError, AssertionError, AttributeError):
        raise PacsError(f"no readable {UID_MAP_NAME}", file=p,
                        hint="give the folder that `pacs fetch` wrote") from None
    return data


def _map_uids(ds: pydicom.Dataset, mapping: dict[str, str]) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _map_uids(item, mapping)
        elif elem.VR == "UI" and isinstance(elem.value, str) and elem.value in mapping:
            elem.value = mapping[elem.value]
    if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
        old = str(ds.file_meta.MediaStorageSOPInstanceUID)
        ds.file_meta.MediaStorageSOPInstanceUID = mapping.get(old, old)


def _study_attributes(url: str, study_uid: str, client) -> dict[str, Any]:
    items = _call(url, f"reading study {study_uid}", client.search_for_studies,
                  search_filters={"StudyInstanceUID": study_uid}, fields=list(_PATIENT_STUDY))
    if not items:
        raise PacsError(f"study {study_uid} is no longer on {_shown(url)}")
    _register(items)
    ds = pydicom.Dataset.from_json(items[0])
    return {kw: ds.get(kw, "") for kw in _PATIENT_STUDY if kw in ds}


# ============================================================ a private Orthanc
ORTHANC_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def orthanc_binary() -> str | None:
    """Path of the Orthanc server (Debian package ``orthanc``), or None."""
    return shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).exists()), None)


def _dicomweb_plugin() -> str | None:
    for d in ORTHANC_PLUGIN_DIRS:
        hits = sorted(Path(d).glob("libOrthancDicomWeb.so*")) if Path(d).is_dir() else []
        if hits:
            return str(hits[0])
    return None


@dataclass
class LocalOrthanc:
    """A running private Orthanc: ``url`` is its DICOMweb root; ``headers`` its credentials."""

    url: str
    port: int
    headers: dict[str, str]
    process: Any
    storage: Path

    def client(self, **kw):
        return connect(self.url, headers=self.headers, **kw)


@contextlib.contextmanager
def local_orthanc(storage: str | os.PathLike, *, user: str = "her2",
                  password: str = "her2-test", timeout_s: float = 30.0):
    """Start Orthanc with its DICOMweb plugin on a free port for tests, benchmarks and demos.

    Storage and index live in ``storage``; the DICOM network server is off; HTTP asks for
    the given user (basic authentication) and refuses remote clients
    (RemoteAccessAllowed false: Orthanc 1.10 has no bind-address option, so only
    127.0.0.1 is served). Stopped on exit. Raises PacsError when Orthanc or the plugin
    is not installed, or it does not start.
    """
    import base64
    import socket
    import subprocess

    import requests
    binary, plugin = orthanc_binary(), _dicomweb_plugin()
    if not binary or not plugin:
        raise PacsError("Orthanc with its DICOMweb plugin is not installed",
                        hint="apt-get install orthanc orthanc-dicomweb")
    storage = Path(storage)
    storage.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {"Name": "her2-local", "StorageDirectory": str(storage / "db"),
              "IndexDirectory": str(storage / "db"), "HttpPort": port,
              "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {user: password},
              "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
              "OrthancExplorerEnabled": False, "WebDavEnabled": False, "HttpThreadsCount": 8,
              "StorageCompression": False, "ConcurrentJobs": 1, "SaveJobs": False}
    cfg = storage / "orthanc.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    log_file = open(storage / "orthanc.log", "wb")
    proc = subprocess.Popen([binary, str(cfg)], stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise PacsError(f"Orthanc stopped at start (exit {proc.returncode}); "
                                f"see {storage / 'orthanc.log'}")
            try:
                if requests.get(base + "/dicom-web/studies", headers=headers, timeout=2).ok:
                    break
            except requests.exceptions.RequestException:
                pass
            if time.monotonic() > deadline:
                raise PacsError(f"Orthanc did not answer within {timeout_s:.0f} s")
            time.sleep(0.2)
        yield LocalOrthanc(url=base + "/dicom-web", port=port, headers=headers, process=proc,
                           storage=storage)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log_file.close()


__all__ = ["orthanc_binary", "local_orthanc", "LocalOrthanc", "PacsError", "StudyInfo", "RemoteSeries", "FetchResult", "connect", "find_studies",
           "find_series", "fetch_study", "store_instances", "deidentify_retrieved"]
