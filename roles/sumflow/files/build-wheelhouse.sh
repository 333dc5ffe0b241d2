#!/usr/bin/env bash
# Build an offline wheelhouse on the Ansible controller: the sumflow wheel plus every runtime dependency
# as binary wheels for the TARGET's Python version and CPU architecture, exactly as pinned (with their
# hashes) by the runtime lock, so hosts install with `pip install --no-index --require-hashes` (no PyPI
# on hosts: the air-gapped path).
#
#   build-wheelhouse.sh OUT_DIR APP_SOURCE_DIR PY_VERSION ARCH LOCK_FILE
#     OUT_DIR          created complete or not at all; holds .complete when done (idempotent)
#     APP_SOURCE_DIR   the directory with pyproject.toml (app/)
#     PY_VERSION       target Python, e.g. 3.11
#     ARCH             target machine, e.g. x86_64 or aarch64
#     LOCK_FILE        the hash-locked runtime dependencies (requirements/runtime.txt)
# OUT_DIR/requirements.txt is what hosts install: the lock plus the sumflow wheel with its own hash.
# The sumflow wheel is built without build isolation in a throwaway venv holding the hash-locked build
# backend, BUILD_LOCK (env; default build.txt beside LOCK_FILE), so no unpinned setuptools is fetched.
# PYTHON (env) is the controller interpreter whose pip is used (default python3).
set -euo pipefail
(($# == 5)) || { echo "usage: $0 OUT_DIR APP_SOURCE_DIR PY_VERSION ARCH LOCK_FILE" >&2; exit 2; }
OUT="$1" SRC="$2" PYVER="$3" ARCH="$4" LOCK="$5"
PYTHON="${PYTHON:-python3}"
BUILD_LOCK="${BUILD_LOCK:-$(dirname "$LOCK")/build.txt}"
for f in "$LOCK" "$BUILD_LOCK"; do
  [[ -f "$f" ]] || { echo "$0: lock file $f not found" >&2; exit 2; }
done

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
"$PYTHON" -m venv "$work/build"
"$work/build/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$BUILD_LOCK"
"$work/build/bin/pip" wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  --wheel-dir "$work/wheels" "$work/src"
wheels=("$work"/wheels/sumflow-*.whl)
((${#wheels[@]} == 1)) || { echo "$0: expected one sumflow wheel, got ${wheels[*]}" >&2; exit 1; }
wheel="${wheels[0]}"

platforms=()
for tag in manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35; do
  platforms+=(--platform "${tag}_${ARCH}")
done
# Exactly the locked wheels (every file's hash is checked); nothing is resolved here.
"$PYTHON" -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps --only-binary=:all: \
  --implementation cp --python-version "$PYVER" "${platforms[@]}" --dest "$work/wheels" -r "$LOCK"

# The hosts' install list: the lock, plus the package itself pinned to the wheel built above.
version="$(basename "$wheel" | cut -d- -f2)"
{
  cat "$LOCK"
  printf 'sumflow==%s \\\n    --hash=sha256:%s\n' "$version" "$(sha256sum "$wheel" | cut -d' ' -f1)"
} >"$work/wheels/requirements.txt"

rm -rf "$OUT"
mv "$work/wheels" "$OUT"
touch "$OUT/.complete"
echo "wheelhouse $OUT: $(find "$OUT" -name '*.whl' | wc -l) wheels" >&2
