#!/usr/bin/env bash
# Installs the system packages Sepia builds and tests against (Debian).
# Idempotent: runs `apt-get update` once, and only when something is missing.
set -euo pipefail

packages=(pkg-config build-essential libisal-dev libhwloc-dev libudev-dev)
# Optional tools the benchmarks compare against: `--bench-tools` adds them.
if [[ "${1:-}" == "--bench-tools" ]]; then
    packages+=(ceph-base fio)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
    sudo_cmd=(sudo)
fi
echo "deps.sh: installing ${missing[*]}" >&2
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
