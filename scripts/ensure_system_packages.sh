#!/usr/bin/env bash
# WeasyPrint needs Pango; install it with the system package manager when missing (as root).
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q "libpango-1.0.so" && ldconfig -p | grep -q "libpangoft2-1.0.so"; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Pango for WeasyPrint" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core >/dev/null
else
  echo "WeasyPrint needs Pango (libpango-1.0-0, libpangoft2-1.0-0); install it with your package manager" >&2
  exit 1
fi
