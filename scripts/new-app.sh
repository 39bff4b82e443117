#!/usr/bin/env bash
# Starts a new Asena app from templates/app:  bash scripts/new-app.sh ../my-app
# The package is named after the directory; the app depends on this checkout's asena-runtime by
# absolute path and starts from this checkout's Cargo.lock, so it builds with the same
# dependency versions (cargo drops what the app does not use).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATE="$REPO/templates/app"

die() {
  echo "new-app: $*" >&2
  exit 1
}

[[ $# -eq 1 && -n $1 ]] || die "usage: bash scripts/new-app.sh DIR   (e.g. ../my-app)"
dir=$1

# The crate name: the directory's name in lowercase, runs of anything else than a-z 0-9 as '-'.
name=$(basename -- "$dir" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')
[[ $name =~ ^[a-z][a-z0-9-]*$ ]] \
  || die "cannot make a crate name from '$(basename -- "$dir")': the directory name must start with a letter"
lib=${name//-/_}

if [[ -e $dir ]]; then
  [[ -d $dir ]] || die "$dir exists and is not a directory"
  [[ -z $(ls -A -- "$dir") ]] || die "$dir exists and is not empty; choose a new directory"
fi
mkdir -p -- "$dir"
dir=$(cd -- "$dir" && pwd)

# The template without anything an in-place build may have left in it.
(cd "$TEMPLATE" && tar --exclude=./target --exclude=./Cargo.lock -cf - .) | (cd "$dir" && tar -xf -)
cp "$REPO/Cargo.lock" "$dir/Cargo.lock"

# sed replacement text: escape the characters special to it.
sed_escape() { printf '%s' "$1" | sed 's/[&|\\]/\\&/g'; }
runtime=$(sed_escape "$REPO/asena-runtime")
sed -i -E \
  -e "s|^name = \"my-app\"|name = \"$name\"|" \
  -e "s|^asena-runtime = \{ path = \"[^\"]*\" \}|asena-runtime = { path = \"$runtime\" }|" \
  "$dir/Cargo.toml"
grep -q "^name = \"$name\"" "$dir/Cargo.toml" || die "templates/app/Cargo.toml: package name not found"
grep -qF "path = \"$REPO/asena-runtime\"" "$dir/Cargo.toml" \
  || die "templates/app/Cargo.toml: asena-runtime path dependency not found"
# The library's name in the code (`my_app::app()`) and the docs.
find "$dir/src" "$dir/tests" "$dir/README.md" -type f \
  -exec sed -i -e "s/\bmy_app\b/$lib/g" -e "s/\bmy-app\b/$name/g" {} +

cat <<MSG
Created $name in $dir

Next steps:
  cd $(printf '%q' "$dir") && cargo run     # ws://127.0.0.1:3000/ws?name=ada
  cargo test
MSG
