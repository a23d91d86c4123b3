#!/usr/bin/env bash
# Installs the workbench's dependencies unattended into the current Python.
#   tools/install.sh          runtime dependencies
#   tools/install.sh --dev    runtime + test dependencies (pytest, hypothesis, playwright)
# pyradiomics 3.0.1 has no wheel for Python 3.11: it builds from source and needs
# numpy and versioneer present first, outside pip's build isolation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
$PY -m pip install -q --upgrade "pip>=24" wheel setuptools versioneer "numpy>=1.26,<2.5"
$PY -m pip install -q -r "$req"
$PY -m pip install -q --no-build-isolation "pyradiomics==3.0.1"
if [ "${1:-}" = "--dev" ]; then
  # headless Chromium for the app's end-to-end browser test (Playwright drives it; no `playwright install`)
  command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)
  # a real PACS for tests/test_pacs.py: Orthanc with its DICOMweb plugin (started on a free local port)
  command -v Orthanc >/dev/null 2>&1 && ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so >/dev/null 2>&1 || \
    (apt-get update && apt-get install -y orthanc orthanc-dicomweb)
  # Debian's PostgreSQL server for the reader-study tests against PostgreSQL (each test run
  # starts its own throw-away cluster with initdb / pg_ctl from /usr/lib/postgresql/*/bin,
  # as the postgres user when run as root); the packaged main cluster is not used
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 \
    || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql)
fi
$PY -c "import radiomics, torch, timm, SimpleITK, streamlit; print('her2 workbench: dependencies ready (torch', torch.__version__, ', cuda', torch.cuda.is_available(), ')')"
