"""Reader studies: radiologists read cases without and with the model (HER2 status).

Layers (nothing here imports streamlit):

* :mod:`.service` -- :class:`ReaderStudyService`, the only API for pages and the CLI
  (sign-in with hashed access codes, per-reader queues, reads, corrections, progress,
  owner export / analysis); state lives only in the database;
* :mod:`.db` / :mod:`.models` / ``migrations/`` -- SQLAlchemy 2.0 store (SQLite WAL by
  default, PostgreSQL via ``HER2_DB_URL``), Alembic schema, append-only reads;
* :mod:`.mrmc` -- per-reader accuracy with Wilson CIs and Obuchowski-Rockette MRMC
  analysis (Hillis df; jackknife or DeLong covariance), validated on Van Dyke (1993);
* :mod:`.export` -- CSV, iMRMC and MRMCaov formats; :mod:`.plots` -- plotly figures.
"""
from her2core.reader_study.service import (AccessDenied, CaseView, CreatedStudy, NextCase,
                                           OwnerSession, ReaderProgress, ReaderSession,
                                           ReaderStudyError, ReaderStudyService, ReadReceipt,
                                           ReadView, StudyStatus)

__all__ = ["ReaderStudyService", "ReaderSession", "OwnerSession", "CreatedStudy", "CaseView",
           "NextCase", "ReadReceipt", "ReadView", "ReaderProgress", "StudyStatus",
           "ReaderStudyError", "AccessDenied"]
