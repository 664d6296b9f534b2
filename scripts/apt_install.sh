#!/usr/bin/env bash
# Install Debian packages for a service that a script or test then starts by hand:
#   scripts/apt_install.sh postgresql
# The packages' own init scripts are kept from starting system-wide daemons while they install
# (a policy-rc.d that refuses, unless the machine has one already). Needs root and apt-get.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
command -v apt-get >/dev/null || { echo "apt_install: no apt-get to install $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "apt_install: run as root to install $*" >&2; exit 1; }
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
start=$SECONDS
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
echo "apt_install: $* installed in $((SECONDS - start)) s" >&2
