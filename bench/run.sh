#!/bin/sh
# run.sh: every benchmark in bench/ (each bench/*.sh but this one), in turn.
set -e
cd "$(dirname "$0")"
for b in *.sh; do
    [ "$b" = run.sh ] && continue
    sh "./$b"
done
