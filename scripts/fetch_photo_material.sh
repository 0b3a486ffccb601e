#!/usr/bin/env bash
# Photographic material for the realistic rendered world, from Debian packages (nothing is installed
# system-wide: the .deb files are unpacked into a scratch folder).
#   backgrounds/  wallpapers of gnome-backgrounds, mate-backgrounds, plasma-workspace-wallpapers
#   textures/     the furniture textures (JPEG) inside sweethome3d-furniture's .sh3f catalogues
#   LICENSES/     each package's Debian copyright file; SOURCES.txt names package and version
# Usage: bash scripts/fetch_photo_material.sh [DEST]   (default: data/photo_material; idempotent)
set -euo pipefail
DEST="${1:-data/photo_material}"
PACKAGES=(gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers sweethome3d-furniture)
if [ -f "$DEST/SOURCES.txt" ]; then echo "$DEST: already complete"; exit 0; fi
command -v apt-get >/dev/null || { echo "apt-get not found: this recipe needs a Debian-based machine" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download "${PACKAGES[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "${PACKAGES[@]}"; }
mkdir -p unpacked
for deb in ./*.deb; do dpkg-deb -x "$deb" unpacked; done
cd - >/dev/null
tmp="$DEST.partial"
rm -rf "$tmp"
mkdir -p "$tmp/backgrounds" "$tmp/textures" "$tmp/LICENSES"
# wallpapers: photographs and renders; skip the small previews
find "$work/unpacked/usr/share/backgrounds" "$work/unpacked/usr/share/wallpapers" -type f \
    \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' \) ! -path '*screenshot*' -size +100k |
  while read -r f; do
    rel="${f#"$work/unpacked/usr/share/"}"
    mkdir -p "$tmp/backgrounds/$(dirname "$rel")"
    cp "$f" "$tmp/backgrounds/$rel"
  done
# furniture textures: JPEGs inside model folders of the catalogues (top-level PNGs are catalogue icons)
for cat in "$work"/unpacked/usr/share/sweethome3d/furniture/*.sh3f; do
  name="$(basename "$cat" .sh3f)"
  mkdir -p "$work/sh3f/$name"
  python3 - "$cat" "$work/sh3f/$name" <<'PY'
import sys, zipfile
archive, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as z:
    for info in z.infolist():
        parts = info.filename.split("/")
        if len(parts) >= 3 and info.filename.lower().endswith((".jpg", ".jpeg")) and info.file_size > 8000:
            z.extract(info, out)
PY
  if [ -n "$(ls -A "$work/sh3f/$name")" ]; then cp -r "$work/sh3f/$name" "$tmp/textures/$name"; fi
done
for p in "${PACKAGES[@]}"; do
  cp "$work/unpacked/usr/share/doc/$p/copyright" "$tmp/LICENSES/$p.copyright"
  echo "$p $(dpkg-deb -f "$work"/"${p}"_*.deb Version)" >> "$tmp/SOURCES.txt"
done
rm -rf "$DEST"
mv "$tmp" "$DEST"
echo "$DEST: $(find "$DEST/backgrounds" -type f | wc -l) backgrounds, $(find "$DEST/textures" -type f | wc -l) textures"
