#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages attnstudio needs to run from source (Qt's system libraries,
# fonts, a virtual display for screenshots) and to test it (librsvg's rsvg-convert and poppler's pdftoppm,
# which the export-fidelity tests raster SVG and PDF exports with) when any is missing. Uses sudo when not root.
# Also a C compiler and Python's headers where missing: `pip install` compiles attention flow's max-flow
# (attnstudio/core/_maxflow.c). With --packaging, also what `make package` and `make package-test` use
# (binutils, patchelf, xz, debootstrap, lintian).
set -euo pipefail
packages=(libgl1 libegl1 libxkbcommon0 libglib2.0-0 libfontconfig1 libdbus-1-3 fonts-dejavu-core
          libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0
          libxcb-render-util0 libxcb-image0 libx11-xcb1 xvfb xauth librsvg2-bin poppler-utils)
[ "${1:-}" = "--packaging" ] && packages+=(binutils patchelf xz-utils dpkg-dev debootstrap lintian curl)
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3 python3-venv)
command -v gcc >/dev/null || packages+=(gcc libc6-dev)
python3 -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h"))' \
    2>/dev/null || packages+=(python3-dev)
command -v dpkg-query >/dev/null || { echo "not a Debian-based system: install the Qt 6 runtime libraries yourself"; exit 0; }
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
