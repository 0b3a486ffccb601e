#!/usr/bin/env bash
# Real furniture models for the viewpoint benchmark on unseen shapes (benchmarks/real_furniture_views.py):
# the Sweet Home 3D catalogues of the Debian package sweethome3d-furniture (CC0 / CC-BY 3.0, see
# LICENSES/), each .sh3f archive unpacked into DEST/<catalogue>/ (its PluginFurnitureCatalog.properties
# beside the model folders: the layout interp3d.data.furniture_models reads). Nothing is installed
# system-wide. Usage: bash scripts/fetch_furniture_models.sh [DEST]   (default: data/furniture_models; idempotent)
set -euo pipefail
DEST="${1:-data/furniture_models}"
PACKAGE=sweethome3d-furniture
if [ -f "$DEST/SOURCES.txt" ]; then echo "$DEST: already complete"; exit 0; fi
command -v apt-get >/dev/null || { echo "apt-get not found: this recipe needs a Debian-based machine" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && { apt-get download "$PACKAGE" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$PACKAGE"; }; } && dpkg-deb -x ./*.deb unpacked)
tmp="$DEST.partial"
rm -rf "$tmp"
mkdir -p "$tmp/LICENSES"
for archive in "$work"/unpacked/usr/share/sweethome3d/furniture/*.sh3f; do
  name="$(basename "$archive" .sh3f)"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$tmp/$name"
done
cp "$work/unpacked/usr/share/doc/$PACKAGE/copyright" "$tmp/LICENSES/$PACKAGE.copyright"
echo "$PACKAGE $(dpkg-deb -f "$work"/${PACKAGE}_*.deb Version)" > "$tmp/SOURCES.txt"
rm -rf "$DEST"
mv "$tmp" "$DEST"
echo "$DEST: $(find "$DEST" -name '*PluginFurnitureCatalog.properties' | wc -l) catalogues, $(find "$DEST" -name '*.obj' | wc -l) models"
