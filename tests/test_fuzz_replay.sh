#!/bin/bash
# Replays every fuzz target's committed corpus and past crash inputs
# (fuzz/corpus/NAME, fuzz/crashes/NAME) through the plain-main build of the
# target: each must run to the end without a crash (and clean under make asan).
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${FUZZ_BIN:=$ROOT/build/fuzz}"
for r in "$FUZZ_BIN"/replay_*; do
    [ -x "$r" ] || continue
    name=${r##*/replay_}
    out=$("$r" "$ROOT/fuzz/corpus/$name" "$ROOT/fuzz/crashes/$name" 2>&1)
    ok $? "fuzz target $name replays its corpus and crash inputs ($(echo "$out" | tail -1))"
done
[ "$TAP_N" -gt 0 ]; ok $? "fuzz targets were found in $FUZZ_BIN"
plan_done
