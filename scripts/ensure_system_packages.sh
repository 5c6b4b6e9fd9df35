#!/usr/bin/env bash
# WeasyPrint needs Pango, and fonts for every script a report may hold: DejaVu covers Latin, Greek,
# Cyrillic, Arabic and Hebrew; Noto CJK covers Chinese/Japanese/Korean; Noto Color Emoji the emoji.
# Installs what is missing with the system package manager (as root); a second run calls no apt.
set -euo pipefail
missing=()
if ! { ldconfig -p 2>/dev/null | grep -q "libpango-1.0.so" && ldconfig -p | grep -q "libpangoft2-1.0.so"; }; then
  missing+=(libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core)
fi
has_font() {  # family, Debian package
  fc-list -q ":family=$1" 2>/dev/null || dpkg -s "$2" >/dev/null 2>&1
}
has_font "Noto Sans CJK SC" fonts-noto-cjk || missing+=(fonts-noto-cjk)
has_font "Noto Color Emoji" fonts-noto-color-emoji || missing+=(fonts-noto-color-emoji)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing for WeasyPrint: ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if command -v fc-cache >/dev/null; then fc-cache -f >/dev/null; fi
else
  echo "WeasyPrint needs these packages (or their equivalents): ${missing[*]}; install them with your package manager" >&2
  exit 1
fi
