#!/usr/bin/env bash
# Debian packages the test suite needs: PostgreSQL (the scale-out store's tests) and chromium
# (the browser tests drive Debian's /usr/bin/chromium with Playwright).
# Installs only what is missing, so a second `make test` costs nothing here.
set -euo pipefail

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
test -x /usr/bin/chromium || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
