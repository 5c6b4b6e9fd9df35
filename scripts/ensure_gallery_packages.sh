#!/usr/bin/env bash
# What `make gallery` draws with: Chromium (the email as a browser shows it), poppler's pdftoppm (PDF
# pages as PNG) and LibreOffice Calc (the workbook printed to PDF). Installed with the system package
# manager when missing, waiting for its lock rather than failing when another install is running.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
command -v soffice >/dev/null || missing+=(libreoffice-calc-nogui)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing for the gallery: ${missing[*]}" >&2
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  echo "the gallery needs these packages (or their equivalents): ${missing[*]}" >&2
  exit 1
fi
