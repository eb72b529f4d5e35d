#!/usr/bin/env bash
# Makes a PyInstaller bundle fit for other systems than the build machine, in place:
#  - leaves out the system libraries every target has (the .deb's Depends names them), because the build
#    machine's copies can need a newer glibc than the target's (libstdc++ and libexpat from Debian 12 need
#    GLIBC_2.36; Ubuntu 22.04 has 2.35);
#  - strips debug symbols, and build-machine paths from RUNPATHs (they point at the builder's Python);
#  - removes files the app never loads.
# Usage: packaging/slim-bundle.sh BUNDLE_FOLDER
set -euo pipefail
BUNDLE=$1
INTERNAL=$BUNDLE/_internal

# libstdc++6, libgcc-s1 and zlib1g are required packages on every Debian and Ubuntu system (and present on any
# desktop Linux); libexpat1 comes with fontconfig, which the window needs anyway. Their sonames have been stable
# for decades, and the system's copy is at least as new as the floor check_abi.py enforces.
for lib in libstdc++.so.6 libgcc_s.so.1 libz.so.1 libexpat.so.1; do
    rm -f "$INTERNAL/$lib"
done

# Files the app never loads (each removal is proven by the clean-system test, tests/packaging):
#  - the Vulkan display platform plugin: attnstudio runs on xcb (offscreen for the self-test without display).
rm -f "$INTERNAL/PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so"
#  - the distributions' RECORD files and licence folders (the licences are in the copyright file, made from the
#    packaging venv); METADATA stays for importlib.metadata.
rm -f "$INTERNAL"/*.dist-info/RECORD
rm -rf "$INTERNAL"/*.dist-info/licenses
#  - ICU's data (31 MiB): Qt links ICU, but attnstudio uses none of what needs its tables (collation, legacy
#    text codecs, ICU time zones): Qt's own Unicode tables do case mapping, text layout and UTF-8. The library
#    must still exist, so it becomes ICU's own "stubdata": the data entry point with an empty table of contents
#    (ICU then reports U_MISSING_RESOURCE_ERROR for any lookup instead of reading data).
for icudata in "$INTERNAL"/PySide6/Qt/lib/libicudata.so.[0-9]*; do
    [ -f "$icudata" ] && [ ! -L "$icudata" ] || continue
    soname=$(basename "$icudata")
    symbol=$(objdump -T "$icudata" | awk '/ icudt[0-9]+_dat$/ {print $NF}')
    [ -n "$symbol" ] || { echo "slim-bundle: no ICU data symbol in $icudata"; exit 1; }
    stub=$(mktemp -d)
    cat > "$stub/stub.s" <<ASM
    .section .rodata
    .globl $symbol
    .type $symbol, @object
    .balign 16
$symbol:
    .short 32               # headerSize
    .byte 0xda, 0x27        # magic
    .short 20, 0            # sizeof(UDataInfo), reserved
    .byte 0, 0, 2, 0        # little endian, ASCII, sizeof(UChar), reserved
    .ascii "ToCP"           # data format: a table of contents of pointers
    .byte 1, 0, 0, 0        # format version
    .byte 0, 0, 0, 0        # data version
    .zero 8                 # padding to headerSize
    .long 0, 0              # no entries, reserved
    .quad 0, 0
    .size $symbol, . - $symbol
    .section .note.GNU-stack,"",@progbits
ASM
    as --64 -o "$stub/stub.o" "$stub/stub.s"
    ld -shared -soname "$soname" -o "$icudata" "$stub/stub.o"
    rm -rf "$stub"
done

# Debug symbols and local symbol tables are most of libpython's and the extension modules' size; what the
# dynamic linker needs stays. Files that auditwheel rewrote with patchelf (numpy.libs) break when stripped
# ("ELF load command address/offset not page-aligned"), so those are left alone.
find "$BUNDLE" -type f \( -name '*.so' -o -name '*.so.*' \) -not -path '*/numpy.libs/*' -print0 \
    | xargs -0 -r strip --strip-unneeded -R .comment -R .note 2>/dev/null || true
# Shared libraries are mapped, not executed: only the app's executable keeps the executable bit.
find "$BUNDLE" -type f \( -name '*.so' -o -name '*.so.*' \) -exec chmod 644 {} +

# RUNPATH entries outside the bundle ($ORIGIN-relative ones stay): the builder's Python prefix is no path
# on the user's machine, and a writable one there would let another user's libraries in.
find "$BUNDLE" -type f \( -name '*.so' -o -name '*.so.*' \) -print0 | while IFS= read -r -d '' file; do
    runpath=$(patchelf --print-rpath "$file" 2>/dev/null) || continue
    [ -n "$runpath" ] || continue
    kept=$(printf '%s' "$runpath" | tr ':' '\n' | grep '^\$ORIGIN' | paste -sd: - || true)
    if [ "$kept" != "$runpath" ]; then
        if [ -n "$kept" ]; then patchelf --set-rpath "$kept" "$file"; else patchelf --remove-rpath "$file"; fi
    fi
done
