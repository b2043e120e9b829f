#!/usr/bin/env bash
# Mutation testing of one area with mutmut (a dev tool: `make mutation AREA=...`, not part of CI).
# Works on a scratch copy of the tracked tree under build/mutation/AREA so the checkout stays
# untouched; prints the kill rate and writes the surviving mutants' diffs to survivors.txt there.
# Timeouts count as killed (the mutant made the tests hang, so they did notice it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
AREA=${1:-}

# area -> "globs to mutate|test files" (globs relative to the repository root)
case "$AREA" in
  pairing)     SPEC="ivif_fusion/runtime/sync*|test/test_sync.py" ;;
  accounting)  SPEC="ivif_fusion/stream/accounting*|test/test_stream.py test/test_replay.py" ;;
  conversions) SPEC="ivif_fusion/io/messages.py ivif_fusion/stream/outputs* ivif_fusion/stream/decode*|test/test_messages.py test/test_stream.py" ;;
  metrics)     SPEC="ivif_fusion/metrics/fusion* ivif_fusion/metrics/qabf* ivif_fusion/metrics/vif* ivif_fusion/metrics/ssim*|test/test_metrics_fusion.py" ;;
  *) echo "usage: make mutation AREA=pairing|accounting|conversions|metrics" >&2; exit 2 ;;
esac
GLOBS=${SPEC%%|*}
TESTS=${SPEC##*|}

if ! .venv/bin/python -c "import mutmut" 2>/dev/null; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt
fi

WORK=build/mutation/$AREA
rm -rf "$WORK" && mkdir -p "$WORK"
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$WORK"
ln -s "$ROOT/.venv" "$WORK/.venv"
set -f  # the globs are mutmut's patterns, not the shell's
{
  # msg/, config/, models/: the share dir the package finds next to itself (bag typestore, configs, weights)
  printf '\n[mutmut]\nsource_paths=ivif_fusion\nalso_copy=\n    msg\n    config\n    models\nonly_mutate=\n'
  for g in $GLOBS; do printf '    %s\n' "$g"; done
  printf 'pytest_add_cli_args_test_selection=\n'
  for t in $TESTS; do [ -f "$t" ] && printf '    %s\n' "$t"; done
  printf 'pytest_add_cli_args=-p no:cacheprovider -q\n'
} >> "$WORK/setup.cfg"
set +f

cd "$WORK"
# One OpenMP thread: mutmut forks its workers, and a forked child of a process whose OpenMP pool
# has started hangs (every mutant would then time out and count as killed).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# The scratch copy sits deeper than the checkout: point it at the checkout's data root.
export IVIF_DATA=${IVIF_DATA:-$(cd "$ROOT/.." && pwd)/shared/data/ivif}
source "$ROOT/scripts/env.sh"
echo "mutation: area $AREA, mutating: $GLOBS; tests: $TESTS (log: $WORK/mutmut.log)"
"$ROOT/.venv/bin/mutmut" run --max-children "${MUTATION_JOBS:-2}" > mutmut.log 2>&1 || true
"$ROOT/.venv/bin/mutmut" export-cicd-stats > /dev/null
"$ROOT/.venv/bin/mutmut" results > results.txt 2>&1 || true
: > survivors.txt
{ grep ': survived' results.txt || true; } | sed 's/:.*//; s/^ *//' | while read -r name; do
  "$ROOT/.venv/bin/mutmut" show "$name" >> survivors.txt 2>&1 || true
  echo >> survivors.txt
done
"$ROOT/.venv/bin/python" - "$AREA" <<'PY'
import json, sys
s = json.load(open("mutants/mutmut-cicd-stats.json"))
killed = s["killed"] + s["timeout"]
total = s["total"] - s["skipped"]
pct = 100.0 * killed / total if total else 0.0
print(f"mutation {sys.argv[1]}: killed {killed} of {total} ({pct:.1f} %), survived {s['survived']}, "
      f"no tests {s['no_tests']}, suspicious {s['suspicious']}")
PY
echo "survivors: $WORK/survivors.txt"
