#!/bin/sh
# batch.sh: the batch forms, users (or segments) per second beside the sgemm
# floor of this machine measured in the same run (bench/README.md).
#
# A synthetic model (USERS x SEGMENTS, rank RANK; one ALS iteration: the
# factors' values do not change the work), then, on THREADS threads:
#   segments --all-users -k 10      sgemm blocks of users x every segment, top 10 a row
#   audience --all-segments -n 100  sgemm blocks of segments x every user, top 100 a segment
#   segments --users FILE -k 10     USERS_LIST users looked up and ranked row by row
# Each command reports its own time after the model load (its closing stderr
# line: the lookups, the ranking and the writing of every line included);
# GFLOP/s counts the 2 k flops of every user x segment score.
set -e
cd "$(dirname "$0")/.."
USERS=${USERS:-100000}
SEGMENTS=${SEGMENTS:-5000}
RANK=${RANK:-64}
THREADS=${THREADS:-$(nproc)}
USERS_LIST=${USERS_LIST:-20000}
OUT=bench/out/batch
make -s starling build/bench/floors
mkdir -p "$OUT"
if [ ! -s "$OUT/m-$USERS-$SEGMENTS-$RANK.model" ]; then
    ./starling synth -o "$OUT/ev.csv.gz" --users "$USERS" --segments "$SEGMENTS" --events $((USERS * 20)) --seed 7 \
        >/dev/null 2>&1
    ./starling train "$OUT/ev.csv.gz" -o "$OUT/m-$USERS-$SEGMENTS-$RANK.model" --factors "$RANK" --iterations 1 \
        --validation 0 -q >/dev/null
fi
M="$OUT/m-$USERS-$SEGMENTS-$RANK.model"
./starling info "$M" >/dev/null
./starling segments "$M" --all-users -k 1 --threads 1 2>/dev/null | cut -f1 | head -n "$USERS_LIST" > "$OUT/users.txt"

# The seconds a batch command reports after its model load.
secs() { sed -n 's/.* answered in \([0-9.]*\) s after the model load.*/\1/p' "$1"; }
rate() { awk -v n="$1" -v s="$2" -v m="$3" -v k="$RANK" 'BEGIN {
    printf "%10.0f %s/s  %7.1f GFLOP/s", n / s, m, 2.0 * k * '"$USERS"' * '"$SEGMENTS"' / s / 1e9 }'; }

echo "users $USERS, segments $SEGMENTS, rank $RANK, threads $THREADS"
./starling segments "$M" --all-users -k 10 --threads "$THREADS" > /dev/null 2> "$OUT/all-users.err"
s=$(secs "$OUT/all-users.err")
printf 'segments --all-users -k 10       %s  (%.2f s)\n' "$(rate "$USERS" "$s" users)" "$s"
./starling audience "$M" --all-segments -n 100 --threads "$THREADS" > /dev/null 2> "$OUT/all-segments.err"
s=$(secs "$OUT/all-segments.err")
printf 'audience --all-segments -n 100   %s  (%.2f s)\n' "$(rate "$SEGMENTS" "$s" segments)" "$s"
./starling segments "$M" --users "$OUT/users.txt" -k 10 --threads "$THREADS" > /dev/null 2> "$OUT/users.err"
s=$(secs "$OUT/users.err")
n=$(wc -l < "$OUT/users.txt")
awk -v n="$n" -v s="$s" 'BEGIN { printf "segments --users (%d users)    %10.0f users/s                   (%.2f s)\n", n, n / s, s }'
floor=$(build/bench/floors "$THREADS" | sed -n 's/^sgemm_gflops //p')
echo "floor: OpenBLAS sgemm 2048^3 on $THREADS threads          $floor GFLOP/s"
