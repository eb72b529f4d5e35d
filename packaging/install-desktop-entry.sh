#!/bin/sh
# Adds attnstudio to your application menu (for this user only), from wherever this folder was unpacked.
set -e
here=$(dirname "$(readlink -f "$0")")
apps=${XDG_DATA_HOME:-$HOME/.local/share}/applications
icons=${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/scalable/apps
mkdir -p "$apps" "$icons"
# Desktop Entry spec, "The Exec key": a path with spaces or other reserved characters goes in double quotes,
# where " ` $ \ take a backslash; the key's value is a string, so each backslash is written twice; % is %%.
escaped=$(printf '%s' "$here/attnstudio" | sed -e 's/\\/\\\\\\\\/g' -e 's/["`$]/\\\\&/g' -e 's/%/%%/g')
sed -e "s|^Exec=.*|Exec=\"$(printf '%s' "$escaped" | sed 's/[\\|&]/\\&/g')\"|" \
    -e "s|^TryExec=.*||" "$here/attnstudio.desktop" > "$apps/attnstudio.desktop"
cp "$here/attnstudio.svg" "$icons/attnstudio.svg"
echo "attnstudio added to your application menu ($apps/attnstudio.desktop)"
