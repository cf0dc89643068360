#!/bin/sh
# eval.sh: users evaluated per second, and the scoring step against the sgemm
# peak of this machine's OpenBLAS, measured in the same run (bench/README.md).
set -e
cd "$(dirname "$0")/.."
make -s build/libstarling.a
mkdir -p bench/out
gcc -std=c11 -O3 -march=native -D_GNU_SOURCE -Isrc -o bench/out/eval_bench bench/eval_bench.c build/libstarling.a \
    -llapacke -lopenblas -ljansson -lz -lpthread -lm
echo "== eval: scoring all users (sgemm + partial top-K), $(nproc) threads =="
bench/out/eval_bench "${USERS:-20000}" "${SEGMENTS:-20000}" "${RANK:-64}" "${THREADS:-$(nproc)}"
