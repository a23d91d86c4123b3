"""A session's uploads go when the session ends or stays idle (webapp.services sweeper).

The end-to-end check against a served app with several browser sessions is in
tests/app/test_sessions.py; here the sweeper's rules and the idle case in the page.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from streamlit.testing.v1 import AppTest

from webapp import services as S

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def test_sweeper_removes_ended_sessions_after_the_grace_and_idle_ones(monkeypatch):
    # the sweeper walks every live folder of the process: keep other tests' out of this one
    import weakref
    monkeypatch.setattr(S, "_FOLDERS", weakref.WeakSet())
    alive = {"a": True, "b": False, "c": True}
    fa, fb, fc, fn = (S.UploadFolder("a"), S.UploadFolder("b"), S.UploadFolder("c"),
                      S.UploadFolder(None))
    for f in (fa, fb, fc, fn):
        (f.path / "x.nii.gz").write_bytes(b"x")
    t0 = time.time()
    fc.last_used = t0 - 50
    try:
        # b is disconnected: kept while it may still come back (grace), removed after
        assert S.sweep_session_uploads(alive.get, grace_s=10, idle_s=100, now=t0) == []
        assert fb.alive and fb.inactive_since == t0
        assert S.sweep_session_uploads(alive.get, grace_s=10, idle_s=100, now=t0 + 9) == []
        alive["b"] = True                                   # it reconnected: the clock restarts
        assert S.sweep_session_uploads(alive.get, grace_s=10, idle_s=100, now=t0 + 12) == []
        assert fb.inactive_since is None
        alive["b"] = False
        S.sweep_session_uploads(alive.get, grace_s=10, idle_s=100, now=t0 + 13)
        gone = S.sweep_session_uploads(alive.get, grace_s=10, idle_s=100, now=t0 + 24)
        assert gone == [(str(fb.path), "ended")] and not fb.path.exists()
        assert fb.removed_because == "ended"
        # c is connected but unused for the idle time: removed; a (used just now) is kept
        gone = S.sweep_session_uploads(alive.get, grace_s=10, idle_s=100, now=t0 + 60)
        assert gone == [(str(fc.path), "idle")] and not fc.path.exists()
        assert fa.alive and fn.alive          # a folder without a session id never "ends"
        assert S.sweep_session_uploads(alive.get, grace_s=10, idle_s=0, now=t0 + 10 ** 6) == []
    finally:
        for f in (fa, fb, fc, fn):
            f.remove()
    assert not any(f.path.exists() for f in (fa, fb, fc, fn))


def test_idle_timeout_closes_the_uploaded_case_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv(S.UPLOAD_IDLE_MIN_ENV, "30")
    img = sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 400, (4, 16, 16)).astype(np.int16))
    sitk.WriteImage(img, str(tmp_path / "t1.nii.gz"))
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("app_pages/case.py")
    at.run()
    at.file_uploader(key="up_T1").set_value(("t1.nii.gz", (tmp_path / "t1.nii.gz").read_bytes(),
                                             "application/gzip"))
    at.run()
    at.button(key="load_upload").click()
    at.run()
    assert not at.exception
    case = at.session_state["case"]
    owner = at.session_state["upload_owner"]
    assert Path(case.files["T1"]).is_file() and Path(case.folder).parent == owner.path
    at.run()                                          # a rerun: in use, nothing removed
    assert S.sweep_session_uploads(lambda sid: True, grace_s=10, idle_s=S.upload_idle_s()) == []
    gone = S.sweep_session_uploads(lambda sid: True, grace_s=10, idle_s=S.upload_idle_s(),
                                   now=owner.last_used + 30 * 60 + 1)
    assert (str(owner.path), "idle") in gone and not owner.path.exists()
    at.run()
    assert at.session_state["case"] is None
    errors = [e.value for e in at.error]
    assert any("upload-1 was closed and its files deleted after 30 minutes without use" in e
               for e in errors), errors
    at.run()                                          # said once
    assert not any("without use" in e.value for e in at.error)


def test_image_part_cache_is_bounded_by_bytes_and_keeps_the_newest():
    from types import SimpleNamespace
    from webapp.predict import _BoundedCache, part_nbytes

    def part(mb):
        cam = SimpleNamespace(map_image=SimpleNamespace(array=np.zeros(int(mb * 2**20), np.uint8)))
        return SimpleNamespace(tasks={"her2": SimpleNamespace(gradcam=[cam])}, features=None)
    assert part_nbytes(part(3)) == 3 * 2**20
    c = _BoundedCache(4, max_bytes=10 * 2**20, weigh=part_nbytes)
    for k, mb in enumerate((3, 3, 3)):
        c.put(k, part(mb))
    assert len(c) == 3 and c.nbytes == 9 * 2**20
    c.get(0)                                   # used: the least recently used is now 1
    c.put(3, part(3))
    assert c.get(1) is None and c.get(0) is not None and c.nbytes == 9 * 2**20
    big = part(40)                             # heavier than the bound alone: kept, alone
    assert c.put(4, big) is big and len(c) == 1 and c.get(4) is big
    for k in range(5, 12):
        c.put(k, part(0.001))
    assert len(c) == 4                         # and the count bound still holds
