#!/bin/sh
# Installs what building and testing stockade needs and is missing. System packages
# come from apt, and only when running as root; otherwise the missing ones are listed.
#   scripts/install-deps.sh          build and test dependencies (libcurl: the MCP
#                                    server links Foundation's networking; curl,
#                                    openssl and iproute2: the egress tests; runsc:
#                                    the gvisor tier and its conformance run)
#   scripts/install-deps.sh --bench  also the tools the benchmark compares against
set -eu

packages="libseccomp-dev libcurl4-openssl-dev gcc musl-tools make git python3 python3-venv util-linux passwd curl openssl ca-certificates iproute2 runsc"
if [ "${1:-}" = "--bench" ]; then
    packages="$packages hyperfine bubblewrap firejail time tinyproxy"
fi

missing=""
for package in $packages; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "stockade needs these packages:$missing" >&2
        echo "install them (for example: sudo apt-get install$missing) and run again" >&2
        exit 1
    fi
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "stockade needs a Swift 6 toolchain on PATH (https://www.swift.org/install/linux/)" >&2
    exit 1
fi
