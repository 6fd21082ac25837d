#!/usr/bin/env bash
# Debian packages the test suite needs: PostgreSQL (the scale-out store's tests, and the CDC streams'
# source) with wal2json (the logical decoding plugin the CDC streams read), chromium (the browser
# tests drive Debian's /usr/bin/chromium with Playwright) and faketime (libfaketime: the clock-skew tests,
# tests/reliability/test_clock_skew.py, run workers with their clock moved).
# Installs only what is missing, so a second `make test` costs nothing here.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
updated=
install() {
  echo "installing Debian packages: $*"
  if [ -z "$updated" ]; then
    $SUDO apt-get update -qq
    updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
test -x /usr/bin/chromium || need+=(chromium)
dpkg -s libfaketime >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  install "${need[@]}"
fi

# wal2json is packaged per PostgreSQL major version: the one installed.
major="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! test -f "/usr/lib/postgresql/$major/lib/wal2json.so"; then
  install "postgresql-$major-wal2json"
fi
