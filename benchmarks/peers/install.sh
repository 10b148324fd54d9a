#!/usr/bin/env bash
# Install the peer methods for benchmarks/sbibm_harness.py into their own virtual
# environments under benchmarks/peers/.venvs/ (git-ignored):
#
#   .venvs/sbi        torch 2.13.0 (CPU), sbi, sbibm (--no-deps, for its reference posteriors)
#   .venvs/bayesflow  torch 2.13.0 (CPU), bayesflow 2.x (Keras 3, torch backend)
#
# torch is installed FIRST and then pinned with a constraints file, so that pip can never
# replace it by another build (a CUDA wheel is several GB). Usage:
#
#   bash benchmarks/peers/install.sh            # both
#   bash benchmarks/peers/install.sh sbi        # one
#
# Environment: PYTHON (default python3), TORCH_VERSION (default 2.13.0),
# SBI_SPEC (default "sbi"), BAYESFLOW_SPEC (default "bayesflow>=2").
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS="$HERE/.venvs"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
SBI_SPEC="${SBI_SPEC:-sbi}"
BAYESFLOW_SPEC="${BAYESFLOW_SPEC:-bayesflow>=2}"
CONSTRAINTS="$VENVS/constraints.txt"
mkdir -p "$VENVS"
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(sbi bayesflow)

check_torch() {  # $1 = venv python
    local v
    v="$("$1" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
    case "$v" in
        "$TORCH_VERSION"*) echo "  torch $v (kept)";;
        *) echo "  ERROR: torch is '$v', expected $TORCH_VERSION" >&2; return 1;;
    esac
}

make_venv() {  # $1 = name
    local dir="$VENVS/$1"
    if [ ! -x "$dir/bin/python" ]; then
        "$PYTHON" -m venv "$dir" || return 1
    fi
    "$dir/bin/python" -m pip install --quiet --upgrade pip wheel setuptools || return 1
    # torch first, from the local CPU wheel (pip.conf's find-links) or the index.
    "$dir/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" || return 1
    check_torch "$dir/bin/python"
}

status=0
for t in "${targets[@]}"; do
    echo "== $t"
    case "$t" in
    sbi)
        make_venv sbi || { echo "  FAILED: venv/torch" >&2; status=1; continue; }
        py="$VENVS/sbi/bin/python"
        "$py" -m pip install --quiet -c "$CONSTRAINTS" "$SBI_SPEC" \
            || { echo "  FAILED: $SBI_SPEC" >&2; status=1; }
        # sbibm only for its reference posterior samples (data files inside the
        # package); its pinned dependencies (old sbi, diffeqtorch, ...) are not wanted.
        "$py" -m pip install --quiet --no-deps sbibm \
            || { echo "  FAILED: sbibm" >&2; status=1; }
        check_torch "$py" || status=1
        "$py" - <<'PY'
import importlib.metadata as md, pathlib
for name in ("torch", "sbi", "sbibm", "pyro-ppl", "zuko", "nflows", "pyknos", "numpy"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} (not installed)")
try:
    files = md.files("sbibm") or []
    refs = sorted({str(f).split("/")[2] for f in files
                   if str(f).endswith("reference_posterior_samples.csv.bz2")})
    print("  sbibm reference posteriors for:", ", ".join(refs) or "NONE")
except md.PackageNotFoundError:
    pass
PY
        ;;
    bayesflow)
        make_venv bayesflow || { echo "  FAILED: venv/torch" >&2; status=1; continue; }
        py="$VENVS/bayesflow/bin/python"
        "$py" -m pip install --quiet -c "$CONSTRAINTS" "$BAYESFLOW_SPEC" \
            || { echo "  FAILED: $BAYESFLOW_SPEC" >&2; status=1; }
        check_torch "$py" || status=1
        KERAS_BACKEND=torch "$py" - <<'PY'
import importlib.metadata as md
for name in ("torch", "bayesflow", "keras", "numpy"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} (not installed)")
import keras
print("  keras backend:", keras.backend.backend())
PY
        ;;
    *) echo "unknown target $t (use sbi, bayesflow)" >&2; status=1;;
    esac
    du -sh "$VENVS/$t" 2>/dev/null | sed 's/^/  size: /'
done
exit $status
