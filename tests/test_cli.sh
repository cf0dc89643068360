#!/bin/bash
# The command line as a user meets it: help, exit codes, synth, train, info,
# segments, score, and every malformed input and damaged model.
. "$(dirname "$0")/lib.sh"
S=$STARLING

# Help and usage.
$S help >"$T/h" 2>&1; ok $? "starling help exits 0"
for c in synth train info segments score; do
    grep -q "^  $c " "$T/h"; ok $? "help lists $c"
    $S "$c" --help >"$T/ch" 2>&1; ok $? "starling $c --help exits 0"
    $S help "$c" | cmp -s - "$T/ch"; ok $? "starling help $c equals $c --help"
done
$S train --help | grep -q -- "--factors K .*(default 64)"; ok $? "train --help shows each default"
expect_fail 2 "unknown command 'frobnicate'" "unknown command is a usage error" -- $S frobnicate
expect_fail 2 "unknown option '--nope'" "unknown option is a usage error" -- $S train x.csv -o m --nope
expect_fail 2 "-o MODEL is required" "missing -o" -- $S train x.csv
expect_fail 2 "is not a non-negative whole number" "bad number" -- $S train x.csv -o m --factors abc
expect_fail 2 "is not one of cg|cholesky" "bad choice" -- $S train x.csv -o m --solver lu
expect_fail 2 "--factors must be between" "factors 0" -- $S train x.csv -o m --factors 0
expect_fail 2 "not a positive duration" "bad half-life" -- $S train x.csv -o m --half-life soon
expect_fail 2 "KIND=WEIGHT" "bad kind weight" -- $S train x.csv -o m --kind-weight click

# synth: deterministic, exact, with truth.
$S synth -o "$T/a.csv" --users 500 --segments 100 --events 5000 --seed 7 --truth "$T/truth.csv" 2>/dev/null
ok $? "synth writes"
$S synth -o "$T/b.csv" --users 500 --segments 100 --events 5000 --seed 7 2>/dev/null
cmp -s "$T/a.csv" "$T/b.csv"; ok $? "same seed, same bytes"
$S synth -o "$T/c.csv" --users 500 --segments 100 --events 5000 --seed 8 2>/dev/null
! cmp -s "$T/a.csv" "$T/c.csv"; ok $? "another seed, other bytes"
[ "$(wc -l <"$T/a.csv")" -eq 5001 ]; ok $? "exactly 5000 events and a header"
head -1 "$T/a.csv" | grep -qx "user,segment,weight,kind,timestamp"; ok $? "header line"
awk -F, 'NR>1 {print $4}' "$T/a.csv" | sort | uniq -c | awk '{n[$2]=$1} END {exit !(n["impression"]>n["click"] && n["click"]>n["follow"] && n["follow"]>n["conversion"] && n["conversion"]>0)}'
ok $? "kinds at funnel ratios: impression > click > follow > conversion > 0"
awk -F, 'NR>1 {s[$1]+=$3} END {for (u in s) if (s[u]<0.999||s[u]>1.001) exit 1}' "$T/truth.csv"
ok $? "each user's planted affinities sum to 1"
$S synth -o "$T/a.csv.gz" --users 500 --segments 100 --events 5000 --seed 7 2>/dev/null
zcat "$T/a.csv.gz" | cmp -s - "$T/a.csv"; ok $? "synth .gz output is the same log, compressed"
$S synth -o - --users 5 --segments 10 --events 20 | wc -l | grep -qx 21; ok $? "synth to stdout"
expect_fail 2 "--segments must be" "synth checks its parameters" -- $S synth -o "$T/x" --segments 1

# train, from a gzip file and from stdin.
$S train "$T/a.csv.gz" -o "$T/m.model" --factors 8 --iterations 3 -q; ok $? "train from gzip"
[ -s "$T/m.model" ]; ok $? "model written"
$S train - -o "$T/m2.model" --factors 8 --iterations 3 -q <"$T/a.csv"; ok $? "train from stdin"
# (file sizes differ by the input names recorded in META)
cmp -s <($S info "$T/m.model" --json | grep -v '"created"\|"path"\|"file_bytes"') <($S info "$T/m2.model" --json | grep -v '"created"\|"path"\|"file_bytes"')
ok $? "gzip and stdin give the same model header"
$S train "$T/a.csv" -o "$T/m3.model" --factors 8 --iterations 3 2>"$T/progress" >"$T/summary"
grep -c "^iteration [0-9]*/3 loss [0-9.]* seconds" "$T/progress" | grep -qx 3; ok $? "a progress line per iteration"
grep -q "peak RSS" "$T/summary"; ok $? "summary reports peak RSS"
$S train "$T/a.csv" -o "$T/m4.model" --factors 8 --iterations 3 --quiet >"$T/q" 2>&1; [ ! -s "$T/q" ]
ok $? "--quiet prints nothing"

# info.
$S info "$T/m.model" >"$T/info"; ok $? "info exits 0"
grep -q "^factors        8 (user factors float32)$" "$T/info" && grep -q "^seed           42$" "$T/info" && grep -q "^fingerprint" "$T/info"
ok $? "info shows rank, seed, fingerprint"
$S info "$T/m.model" --json | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["factors"]==8' 2>/dev/null
ok $? "info --json is JSON"

# segments and score.
U=$(awk -F, 'NR==2 {print $1}' "$T/a.csv")
$S segments "$T/m.model" "$U" -k 5 >"$T/seg"; ok $? "segments exits 0"
[ "$(wc -l <"$T/seg")" -eq 5 ]; ok $? "-k 5 gives five lines"
awk -F'\t' 'NF!=2 {exit 1}' "$T/seg"; ok $? "SEGMENT<TAB>SCORE lines"
sort -t$'\t' -k2,2 -g -r "$T/seg" | cmp -s - "$T/seg"; ok $? "best first"
$S segments "$T/m.model" "$U" -k 100 --exclude-seen | cut -f1 | sort >"$T/unseen"
awk -F, -v u="$U" '$1==u {print $2}' "$T/a.csv" | sort -u >"$T/seen"
[ -z "$(comm -12 "$T/unseen" "$T/seen")" ]; ok $? "--exclude-seen leaves out every segment the user had"
$S segments "$T/m.model" "$U" -k 3 --json | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d["segments"])==3' 2>/dev/null
ok $? "segments --json"
S1=$(sed -n 1p "$T/seg" | cut -f1); S3=$(sed -n 3p "$T/seg" | cut -f1)
$S score "$T/m.model" "$U" "$S3" "$S1" >"$T/score"; ok $? "score exits 0"
[ "$(cut -f1 "$T/score" | tr '\n' ' ')" = "$S3 $S1 " ]; ok $? "scores in the order asked"
[ "$(sed -n 2p "$T/score")" = "$(sed -n 1p "$T/seg")" ]; ok $? "score equals the segments listing"
expect_fail 1 "unknown user 'nobody'" "segments: unknown user" -- $S segments "$T/m.model" nobody
expect_fail 1 "unknown user 'nobody'" "score: unknown user" -- $S score "$T/m.model" nobody "$S1"
expect_fail 1 "unknown segment 'noseg'" "score: unknown segment" -- $S score "$T/m.model" "$U" "$S1" noseg

# Malformed input: FILE:LINE: reason, exit 1; or skipped with --on-error skip.
bad() { printf "$2" >"$T/bad.csv"; expect_fail 1 "bad.csv:$3" "$1" -- $S train "$T/bad.csv" -o "$T/x.model" -q; }
bad "missing field" 'u1,s1,1\nu2\n' "2: missing segment field"
bad "bad number" 'u1,s1,1\nu2,s2,x1\n' "2: bad weight 'x1'"
bad "NaN weight" 'u1,s1,1\nu2,s2,nan\n' "2: weight is NaN"
bad "infinite weight" 'u1,s1,1\nu2,s2,inf\n' "2: weight is infinite"
bad "negative weight" 'u1,s1,1\nu2,s2,-3\n' "2: negative weight"
bad "bad timestamp" 'u1,s1,1,click,1\nu2,s2,1,click,never\n' "2: bad timestamp"
bad "too many fields" 'u1,s1,1,a,1,extra\n' "1: too many fields"
head -c 2000000 /dev/zero | tr '\0' 'a' >"$T/long.csv"; printf ',s,1\n' >>"$T/long.csv"
expect_fail 1 "long.csv:1: line longer than" "over-long line" -- $S train "$T/long.csv" -o "$T/x.model" -q
printf 'u1,s1,1\nu2,s2,-3\nu3\nu4,s4,2\n' >"$T/mixed.csv"
$S train "$T/mixed.csv" -o "$T/x.model" --factors 2 --iterations 1 --on-error skip 2>"$T/skip" >/dev/null
ok $? "--on-error skip trains on the good lines"
grep -q "skipped 2 malformed lines" "$T/skip" && grep -q "mixed.csv:3: missing segment" "$T/skip"
ok $? "skipped lines counted and shown"
: >"$T/empty.csv"
expect_fail 1 "no events" "empty input is an error" -- $S train "$T/empty.csv" -o "$T/x.model" -q
expect_fail 1 "cannot open" "missing input file" -- $S train "$T/none.csv" -o "$T/x.model" -q
[ ! -e "$T/x.model" ] || $S info "$T/x.model" >/dev/null; ok $? "a failed train leaves no broken model"

# Damaged models: a clear message and exit 1.
head -c 1000 "$T/m.model" >"$T/trunc.model"
expect_fail 1 "truncated" "truncated model" -- $S info "$T/trunc.model"
cp "$T/m.model" "$T/flip.model"; printf '\x55' | dd of="$T/flip.model" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect_fail 1 "checksum mismatch" "corrupted model" -- $S segments "$T/flip.model" "$U"
expect_fail 1 "not a starling model" "not a model" -- $S info "$T/a.csv"
expect_fail 1 "cannot open the model" "missing model" -- $S info "$T/none.model"
plan_done
