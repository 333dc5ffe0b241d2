#!/usr/bin/env bash
# Build an offline wheelhouse on the Ansible controller: the sumflow wheel plus every runtime dependency
# as binary wheels for the TARGET's Python version and CPU architecture, so hosts install with
# `pip install --no-index` (no PyPI on hosts: the air-gapped path).
#
#   build-wheelhouse.sh OUT_DIR APP_SOURCE_DIR PY_VERSION ARCH [CONSTRAINTS_FILE]
#     OUT_DIR          created complete or not at all; holds .complete when done (idempotent)
#     APP_SOURCE_DIR   the directory with pyproject.toml (app/)
#     PY_VERSION       target Python, e.g. 3.11
#     ARCH             target machine, e.g. x86_64 or aarch64
#     CONSTRAINTS_FILE optional pins (requirements.txt) applied to the dependencies
# PYTHON (env) is the controller interpreter whose pip is used (default python3).
set -euo pipefail
(($# >= 4)) || { echo "usage: $0 OUT_DIR APP_SOURCE_DIR PY_VERSION ARCH [CONSTRAINTS_FILE]" >&2; exit 2; }
OUT="$1" SRC="$2" PYVER="$3" ARCH="$4" CONSTRAINTS="${5:-}"
PYTHON="${PYTHON:-python3}"

[[ -f "$OUT/.complete" ]] && exit 0
mkdir -p "$(dirname "$OUT")"
exec 9>"$OUT.lock"
flock 9
[[ -f "$OUT/.complete" ]] && exit 0

work="$(mktemp -d "$(dirname "$OUT")/.wheelhouse.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Build from a clean copy: no stale build/ or egg-info from a developer's tree ends up in the wheel.
mkdir -p "$work/src" "$work/wheels"
tar -C "$SRC" --exclude=build --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache -cf - . |
  tar -C "$work/src" -xf -
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" "$work/src"

platforms=()
for tag in manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35; do
  platforms+=(--platform "${tag}_${ARCH}")
done
constraint_args=()
[[ -n "$CONSTRAINTS" ]] && constraint_args=(--constraint "$CONSTRAINTS")
"$PYTHON" -m pip download --quiet --only-binary=:all: --implementation cp --python-version "$PYVER" \
  "${platforms[@]}" "${constraint_args[@]}" --dest "$work/wheels" "$work"/wheels/sumflow-*.whl

rm -rf "$OUT"
mv "$work/wheels" "$OUT"
touch "$OUT/.complete"
echo "wheelhouse $OUT: $(find "$OUT" -name '*.whl' | wc -l) wheels" >&2
