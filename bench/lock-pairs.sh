#!/usr/bin/env bash
# Stress of the repository lock (not part of npm test): PAIRS pairs of simultaneous
# `iebs backup` runs into one repository. Prints how many pairs had exactly one run
# commit and the other stopped by the lock (exit 11), how many committed one after the
# other, and anything else; then verifies the repository and restores every snapshot a
# run reported as made. Run after `npm run build`:  bash bench/lock-pairs.sh [PAIRS]
set -u
PAIRS=${1:-60}
CLI="$(cd "$(dirname "$0")/.." && pwd)/dist/cli/main.js"
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
export IEBS_CONFIG_DIR=$D/cfg IEBS_CACHE_DIR=$D/cache
node "$CLI" keygen --out "$D/k" --name rt >/dev/null
mkdir -p "$D/src"; for i in 0 1 2; do head -c 3000000 /dev/urandom > "$D/src/f$i"; done
node "$CLI" backup "$D/src" --repo "$D/repo" --key "$D/k/backup.key" --name rt >/dev/null
both=0; one=0; other=0; made=()
name() { node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).snapshot)' "$1"; }
for p in $(seq 1 "$PAIRS"); do
  echo "pair $p" > "$D/src/changing"
  node "$CLI" backup "$D/src" --repo "$D/repo" --key "$D/k/backup.key" --name rt --json > "$D/a.out" 2>"$D/a.err" & A=$!
  node "$CLI" backup "$D/src" --repo "$D/repo" --key "$D/k/backup.key" --name rt --json > "$D/b.out" 2>"$D/b.err" & B=$!
  wait $A; ra=$?; wait $B; rb=$?
  if [ $ra = 0 ] && [ $rb = 0 ]; then both=$((both+1))
  elif { [ $ra = 0 ] && [ $rb = 11 ]; } || { [ $ra = 11 ] && [ $rb = 0 ]; }; then one=$((one+1))
  else other=$((other+1)); echo "pair $p: exits $ra $rb: $(cat "$D/a.err" "$D/b.err")"; fi
  [ $ra = 0 ] && made+=("$(name "$D/a.out")")
  [ $rb = 0 ] && made+=("$(name "$D/b.out")")
done
echo "pairs: $one one committed and one stopped by the lock, $both both committed (one after the other), $other other"
echo "distinct snapshot names reported: $(printf '%s\n' "${made[@]}" | sort -u | wc -l) of ${#made[@]}"
node "$CLI" verify --repo "$D/repo" --key "$D/k/recipient.asc" | tail -1
bad=0
for s in "${made[@]}"; do node "$CLI" restore --repo "$D/repo" --key "$D/k/restore.key" --target "$D/r-$s" --snapshot "$s" >/dev/null 2>&1 || bad=$((bad+1)); done
echo "snapshots reported made that failed to restore: $bad of ${#made[@]}"
