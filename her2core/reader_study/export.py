"""Export effective reads for other software.

Input is the owner's table from ``ReaderStudyService.reads_table`` (one row per effective
read, with truth). Formats:

* ``csv``: every column of that table (audit fields included).
* ``imrmc``: the text input format of iMRMC (FDA/DIDSR): free header lines, ``NR:``,
  ``N0:``, ``N1:``, ``NM:``, then ``BEGIN DATA:`` and rows ``readerID,caseID,modalityID,score``;
  truth rows use readerID ``-1`` (``-1,caseID,truth,0|1``, modality field as RJafroc's
  DfSaveDataFile writes it). Score = rating (0-100, higher = more likely HER2-positive).
* ``mrmcaov``: CSV data frame for the R package MRMCaov with columns
  ``reader, treatment, case, truth, rating`` (``mrmc(empirical_auc(truth, rating),
  treatment, reader, case, data = read.csv(...))``).

Readers are written as ``R<number>`` (names stay in the csv export only); arms as
``unaided`` / ``aided``.
"""
from __future__ import annotations

import io

import pandas as pd

FORMATS = ("csv", "imrmc", "mrmcaov")


def _check(df: pd.DataFrame) -> pd.DataFrame:
    need = {"reader_number", "case_id", "her2", "arm", "rating"}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"reads table lacks columns {sorted(missing)}")
    if "superseded" in df.columns and df["superseded"].any():
        df = df[~df["superseded"].astype(bool)]
    return df


def to_mrmcaov(df: pd.DataFrame) -> pd.DataFrame:
    df = _check(df)
    out = pd.DataFrame({
        "reader": "R" + df["reader_number"].astype(int).astype(str),
        "treatment": df["arm"].astype(str),
        "case": df["case_id"].astype(str),
        "truth": df["her2"].astype(int),
        "rating": df["rating"].astype(float),
    })
    return out.sort_values(["treatment", "reader", "case"], kind="stable").reset_index(drop=True)


def to_imrmc(df: pd.DataFrame, study_name: str = "HER2 reader study") -> str:
    d = to_mrmcaov(df)
    truth = d.drop_duplicates("case").set_index("case")["truth"].sort_index()
    buf = io.StringIO()
    # iMRMC looks for "N0:", "NR:", ... anywhere in header lines: keep colons out of the title
    title = " ".join(str(study_name).replace(":", " ").replace(",", " ").split())
    buf.write(f"{title} - HER2 reader study exported by her2core (score = rating 0-100, "
              "higher = more likely HER2-positive)\n")
    buf.write(f"NR:{d['reader'].nunique()}\n")
    buf.write(f"N0:{int((truth == 0).sum())}\n")
    buf.write(f"N1:{int((truth == 1).sum())}\n")
    buf.write(f"NM:{d['treatment'].nunique()}\n")
    buf.write("BEGIN DATA:\n")
    for case, t in truth.items():
        buf.write(f"-1,{case},truth,{int(t)}\n")
    for row in d.itertuples(index=False):
        buf.write(f"{row.reader},{row.case},{row.treatment},{row.rating:g}\n")
    return buf.getvalue()


def export_reads(df: pd.DataFrame, fmt: str, *, study_name: str = "HER2 reader study") -> str:
    fmt = fmt.lower()
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "mrmcaov":
        return to_mrmcaov(df).to_csv(index=False)
    if fmt == "imrmc":
        return to_imrmc(df, study_name)
    raise ValueError(f"unknown export format {fmt!r} (use one of {', '.join(FORMATS)})")


def read_imrmc(text: str) -> pd.DataFrame:
    """Parse an .imrmc text back to reader, treatment, case, truth, rating (for checks)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().upper().startswith("BEGIN DATA"))
    truth, rows = {}, []
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        r, c, m, v = [x.strip() for x in line.split(",")]
        if r == "-1":
            truth[c] = int(float(v))
        else:
            rows.append((r, m, c, float(v)))
    out = pd.DataFrame(rows, columns=["reader", "treatment", "case", "rating"])
    out["truth"] = out["case"].map(truth)
    return out[["reader", "treatment", "case", "truth", "rating"]]
