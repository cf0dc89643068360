#!/bin/bash
# run.sh: every benchmark, one script each; `make bench` runs this.
# Each script prints its table and writes it under bench/out/ as well;
# bench/README.md explains each one and keeps the last figures.
set -euo pipefail
cd "$(dirname "$0")"
echo "== serving: starling serve vs redis-server (bench/serve.sh) =="
./serve.sh
