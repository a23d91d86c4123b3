"""Exceptions that carry the case and file they concern.

Every error a user can cause is a Her2Error whose message names the case and the
file and says what to do; the CLI and the app print ``str(err)`` and never a
traceback.
"""
from __future__ import annotations

from pathlib import Path


class Her2Error(Exception):
    """Base class for errors that are the input's fault, not the program's."""

    def __init__(self, message: str, *, case_id: str | None = None,
                 file: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.case_id = case_id
        self.file = str(file) if file is not None else None
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.case_id is not None:
            where.append(f"case {self.case_id}")
        if self.file is not None:
            where.append(f"file {self.file}")
        text = (", ".join(where) + ": " if where else "") + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def with_context(self, *, case_id: str | None = None,
                     file: str | Path | None = None) -> "Her2Error":
        """Fill in case / file where the raiser did not know them."""
        if case_id is not None and self.case_id is None:
            self.case_id = case_id
        if file is not None and self.file is None:
            self.file = str(file)
        self.args = (self.__str__(),)
        return self


class ImageLoadError(Her2Error):
    """A file could not be read as an image, or is not the image expected."""


class GeometryError(Her2Error):
    """Two images (or an image and a mask) do not share the geometry required."""


class MaskError(Her2Error):
    """A mask is empty, multi-label without a choice, outside its image, too small."""


class CohortError(Her2Error):
    """cohort.csv or the cohort's folder layout breaks ../shared/cohort-format.md."""


class BundleError(Her2Error):
    """A model bundle is missing, tampered with, or not one of ours."""


class InputLimitError(Her2Error):
    """An input exceeds a size / memory guard (declared size, zip expansion, upload)."""
