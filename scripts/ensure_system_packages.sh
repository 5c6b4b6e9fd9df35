#!/usr/bin/env bash
# What the project needs from the system, installed with the system package manager (as root) when missing:
# * WeasyPrint: Pango, HarfBuzz's subsetter (libharfbuzz-subset0; without it every PDF logs "Using fontTools
#   instead of HarfBuzz") and fonts for every script a report may hold: DejaVu covers Latin, Greek,
#   Cyrillic, Arabic and Hebrew; Noto CJK covers Chinese/Japanese/Korean; Noto Color Emoji the emoji;
# * Chromium (/usr/bin/chromium), which the console's browser tests drive.
# Everything is looked for first, so a second run calls no apt; apt waits up to 10 minutes for the
# package-manager lock (another install, unattended upgrades) instead of failing at once.
set -euo pipefail
missing=()
has_library() {  # soname; grep reads the whole list (with -q, pipefail would see ldconfig's SIGPIPE)
  ldconfig -p 2>/dev/null | grep -F "$1" >/dev/null
}
if ! { has_library "libpango-1.0.so" && has_library "libpangoft2-1.0.so"; }; then
  missing+=(libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core)
fi
has_library "libharfbuzz-subset.so.0" || missing+=(libharfbuzz-subset0)
has_font() {  # family, Debian package
  fc-list -q ":family=$1" 2>/dev/null || dpkg -s "$2" >/dev/null 2>&1
}
has_font "Noto Sans CJK SC" fonts-noto-cjk || missing+=(fonts-noto-cjk)
has_font "Noto Color Emoji" fonts-noto-color-emoji || missing+=(fonts-noto-color-emoji)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing: ${missing[*]}" >&2
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  if command -v fc-cache >/dev/null; then fc-cache -f >/dev/null; fi
else
  echo "needed from the system (or their equivalents): ${missing[*]}; install them with your package manager" >&2
  exit 1
fi
