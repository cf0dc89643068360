#!/bin/bash
# random_models.sh DIR USERS SEGMENTS RANK: DIR/f32.model and DIR/i8.model
# (its user factors quantized) from random factors (normal, sd 0.1, seed 1)
# with `starling import`, ids user-000000001 and segment-000001; kept when
# they exist. For the benchmarks whose cost does not depend on the values
# (capacity.sh, scale.sh). The factors are written 1M rows at a time, so
# 10M users need no more than the model's own memory.
set -euo pipefail
d=$1 users=$2 segs=$3 k=$4
S=${STARLING:-./starling}
mkdir -p "$d"
[ -s "$d/f32.model" ] && [ -s "$d/i8.model" ] && exit 0
/usr/bin/python3 - "$d" "$users" "$segs" "$k" <<'PY'
import sys, numpy as np
d, m, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(1)
step = 1 << 20
u = np.lib.format.open_memmap(f"{d}/u.npy", mode="w+", dtype=np.float32, shape=(m, k))
for a in range(0, m, step):
    u[a:min(m, a + step)] = rng.standard_normal((min(m, a + step) - a, k), dtype=np.float32) * 0.1
u.flush()
del u
np.save(f"{d}/v.npy", rng.standard_normal((n, k), dtype=np.float32) * 0.1)
with open(f"{d}/u.txt", "w") as f:
    for a in range(0, m, step):
        f.write("".join(f"user-{i:09d}\n" for i in range(a, min(m, a + step))))
with open(f"{d}/v.txt", "w") as f:
    f.write("".join(f"segment-{i:06d}\n" for i in range(n)))
PY
"$S" import --user-factors "$d/u.npy" --user-ids "$d/u.txt" --segment-factors "$d/v.npy" --segment-ids "$d/v.txt" \
    -o "$d/f32.model"
"$S" quantize "$d/f32.model" -o "$d/i8.model"
rm -f "$d/u.npy" "$d/v.npy" "$d/u.txt" "$d/v.txt"
