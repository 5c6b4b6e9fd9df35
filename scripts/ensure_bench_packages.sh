#!/usr/bin/env bash
# What `make bench` drives load with: wrk (bench/api.py). Installed with the system package manager when
# missing, waiting up to 10 minutes for its lock (another install, unattended upgrades) rather than failing.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing for the benchmarks: ${missing[*]}" >&2
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  echo "the benchmarks need these packages (or their equivalents): ${missing[*]}" >&2
  exit 1
fi
