#!/bin/sh
# make bench: runs every benchmark script in bench/ (each prints its figures
# beside the machine's floors measured in the same run). Results are also
# written under bench/out/. BENCH_ONLY=train runs just bench/train.sh.
set -e
cd "$(dirname "$0")/.."
mkdir -p bench/out
for b in bench/*.sh; do
    [ "$b" = bench/run.sh ] && continue
    name=$(basename "$b" .sh)
    if [ -n "${BENCH_ONLY:-}" ] && [ "$BENCH_ONLY" != "$name" ]; then continue; fi
    echo "== $name"
    "$b"
    echo
done
