"""Subprocess used by test_durability.py: signs in and saves reads in a loop.

Prints "READ <id>" after each save_read has returned (i.e. after its commit), flushing
stdout, so the parent knows exactly which reads were acknowledged before it kills us.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from her2core.reader_study.service import ReaderStudyService


def main(url: str, study: str, code: str, go_file: str | None = None) -> int:
    svc = ReaderStudyService.open(url)
    r = svc.sign_in(study, code)
    print("READY", flush=True)
    if go_file:  # start together with the other workers
        deadline = time.monotonic() + 60
        while not Path(go_file).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    n = 0
    while True:
        nxt = svc.next_case(r)
        if nxt.status != "case":
            break
        rec = svc.save_read(r, nxt.case.queue_item_id, call_positive=n % 2 == 0,
                            confidence=float(n % 101))
        print(f"READ {rec.read_id}", flush=True)
        n += 1
    print(f"DONE {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
