#!/bin/bash
# demo.sh: the built-in default, end to end. Generates the default synthetic
# ad-engagement log, trains models/default.model on it, and prints a few
# users' best segments beside the interests synth planted in them.
set -euo pipefail
cd "$(dirname "$0")/.."
S=./starling
EVENTS=models/default-events.csv.gz
TRUTH=models/default-truth.csv
MODEL=models/default.model
KINDS=impression=0.2,click=1,follow=3,conversion=5

echo "== 1. synthetic ad-engagement log (seed 42) =="
$S synth -o "$EVENTS" --users 50000 --segments 2000 --events 2000000 --seed 42 --truth "$TRUTH"
echo
echo "== 2. train $MODEL =="
$S train "$EVENTS" -o "$MODEL" --factors 64 --iterations 15 --kind-weight "$KINDS" --seed 42
echo
echo "== 3. a few users' best segments (model) beside their planted interests (truth) =="
# Three users with a few dozen events: enough to show what they care about.
users=$(zcat "$EVENTS" | awk -F, 'NR > 1 {n[$1]++} END {for (u in n) if (n[u] >= 30 && n[u] <= 60) print u}' |
        sort | awk 'NR <= 3')
for u in $users; do
    n=$(zcat "$EVENTS" | grep -c "^$u,")
    printf '\n%-40s %-8s %-34s %s\n' "user $u ($n events): model's top 5" score "planted interest" affinity
    paste <($S segments "$MODEL" "$u" -k 5) \
          <(awk -F, -v u="$u" '$1 == u {print $2 "\t" $3}' "$TRUTH" | sort -t$'\t' -k2,2 -g -r | head -5) |
        awk -F'\t' '{ printf "  %-38s %-8.4f %-34s %s\n", $1, $2, $3, $4 }'
done
echo
echo "Ask it yourself:  ./starling segments $MODEL u000123 -k 10"
echo "Model header:     ./starling info $MODEL"
