#!/usr/bin/env bash
# A clean minimal system to install the packages into, as a new user's machine would be: a debootstrap
# `minbase` root (no X, no fonts, no GL), cached under build/roots/<suite>.base and copied fresh for each test.
# Usage: packaging/clean-root.sh SUITE DEST      e.g. bookworm build/roots/bookworm.run
#   SUITE: bookworm (Debian 12), jammy (Ubuntu 22.04, main only), noble (Ubuntu 24.04, main only)
# Needs root, debootstrap and the distribution's archive over the network (only for the first, cached, run).
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=$1
DEST=$2
CACHE=build/roots/$SUITE.base
case "$SUITE" in
    bookworm) MIRROR=http://deb.debian.org/debian; KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
              SCRIPT=bookworm; SOURCES="deb $MIRROR bookworm main" ;;
    jammy|noble)
              MIRROR=http://archive.ubuntu.com/ubuntu; KEYRING=build/roots/ubuntu-archive-keyring.gpg
              SCRIPT=gutsy      # debootstrap's script for every Ubuntu release since 7.10
              SOURCES="deb $MIRROR $SUITE main"$'\n'"deb $MIRROR $SUITE-updates main" ;;
    *) echo "unknown suite $SUITE"; exit 2 ;;
esac

if [ ! -f "$CACHE/.complete" ]; then
    command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)"; exit 2; }
    mkdir -p build/roots
    if [ ! -f "$KEYRING" ]; then
        # Debian does not package Ubuntu's archive key; take it from Ubuntu's keyring package, pinned by hash.
        deb=build/roots/ubuntu-keyring.deb
        curl -fsSL -o "$deb" "$MIRROR/pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb"
        echo "0d0e7ed6b112f5d03eabf3c7eb01ebdacf9c57714b279e90495cfc58c8c4520f  $deb" | sha256sum -c --quiet - \
            || { echo "ubuntu-keyring.deb: unexpected checksum"; exit 2; }
        dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/keyrings/ubuntu-archive-keyring.gpg > "$KEYRING"
    fi
    rm -rf "$CACHE"
    debootstrap --variant=minbase --keyring="$KEYRING" "$SUITE" "$CACHE" "$MIRROR" "/usr/share/debootstrap/scripts/$SCRIPT" \
        > "build/roots/$SUITE.debootstrap.log" 2>&1 || { tail -20 "build/roots/$SUITE.debootstrap.log"; exit 1; }
    printf '%s\n' "$SOURCES" > "$CACHE/etc/apt/sources.list"
    cp /etc/resolv.conf "$CACHE/etc/resolv.conf"
    chroot "$CACHE" apt-get update -qq
    chroot "$CACHE" apt-get clean
    touch "$CACHE/.complete"
fi
# A test that was killed can leave /proc, /dev and the X socket folder mounted inside the old copy: unmount
# them before deleting it, and never cross into another file system while deleting.
if [ -d "$DEST" ]; then
    dest_abs=$(readlink -f "$DEST")
    awk -v root="$dest_abs/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r | while read -r where; do
        umount "$where" 2>/dev/null || umount -l "$where"
    done
    rm -rf --one-file-system "$DEST"
fi
cp -a "$CACHE" "$DEST"
cp /etc/resolv.conf "$DEST/etc/resolv.conf"
