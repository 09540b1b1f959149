#!/usr/bin/env bash
# Build the sdist and, from it, the wheel (`python -m build`), check the sdist
# carries the Cython sources, then install the wheel into a fresh venv whose
# PATH holds no compiler and that has no Cython, and run `gq demo` from outside
# the source tree: what a user gets from a wheel must work on its own. Also checks
# which builds [tool.cibuildwheel] selects.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$(pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python -m pip install --quiet --disable-pip-version-check build
python -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || {
    tail -40 "$work/build.log"; echo "wheel: python -m build failed" >&2; exit 1; }
sdist=("$work"/dist/*.tar.gz)
wheel=("$work"/dist/*.whl)
echo "wheel: built $(basename "${sdist[0]}") and $(basename "${wheel[0]}")"

# the sdist must rebuild the core: every .pyx/.pxd/.pyi (and C include files)
tar tzf "${sdist[0]}" | sed 's|^[^/]*/||' | sort > "$work/sdist.txt"
missing=0
for f in gq/_core/*.pyx gq/_core/*.pxd gq/_core/*.pyi gq/py.typed gq/_core/include/*; do
    [ -e "$f" ] || continue
    grep -qxF "$f" "$work/sdist.txt" || { echo "wheel: sdist lacks $f" >&2; missing=1; }
done
if grep -qE '\.(so|pyc)$' "$work/sdist.txt"; then
    echo "wheel: sdist carries built files" >&2; missing=1
fi
[ "$missing" -eq 0 ] || exit 1

# [tool.cibuildwheel] must select the 16 builds the README promises. Building
# them needs a container engine, which this machine lacks, so only the
# selection is checked here (cibuildwheel in a venv of its own).
python -m venv "$work/cibw"
"$work/cibw/bin/python" -m pip install --quiet --disable-pip-version-check cibuildwheel
"$work/cibw/bin/python" -m cibuildwheel --print-build-identifiers --platform linux . \
    | sort > "$work/ids.txt"
for py in cp310 cp311 cp312 cp313; do
    for libc in manylinux musllinux; do
        for arch in x86_64 aarch64; do echo "$py-${libc}_$arch"; done
    done
done | sort > "$work/ids-wanted.txt"
diff "$work/ids-wanted.txt" "$work/ids.txt" > /dev/null || {
    echo "wheel: [tool.cibuildwheel] selects other builds than the 16 wanted:" >&2
    diff "$work/ids-wanted.txt" "$work/ids.txt" >&2; exit 1; }
echo "wheel: [tool.cibuildwheel] selects the $(wc -l < "$work/ids.txt") builds wanted"

# a fresh venv; from here on PATH is the venv's bin alone (no cc, gcc, cython)
python -m venv "$work/venv"
clean_env=(env -i HOME="$work" PATH="$work/venv/bin" LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1)
"${clean_env[@]}" python -m pip install --quiet --disable-pip-version-check \
    --only-binary :all: "${wheel[0]}"
for tool in cc gcc clang cython; do
    if "${clean_env[@]}" /bin/sh -c "command -v $tool" > /dev/null 2>&1; then
        echo "wheel: $tool is on the clean PATH" >&2; exit 1
    fi
done
if "${clean_env[@]}" python -c "import Cython" 2> /dev/null; then
    echo "wheel: Cython is importable in the clean venv" >&2; exit 1
fi
cd "$work"
where="$("${clean_env[@]}" python -c "import gq, os; print(os.path.dirname(gq.__file__))")"
case "$where" in
    "$src"*) echo "wheel: gq imported from the source tree ($where)" >&2; exit 1 ;;
esac
echo "wheel: gq imported from $where"
timeout 300 "${clean_env[@]}" gq demo --data "$work/demo-data"
echo "wheel: gq demo ran from the installed wheel"
