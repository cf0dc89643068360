# lib.sh: TAP helpers for the shell tests. Source it; call `plan_done` last.
# STARLING (the binary under test) comes from the Makefile; default ./starling.
: "${STARLING:=$(cd "$(dirname "$0")/.." && pwd)/starling}"
TAP_N=0
TAP_FAILED=0
T=$(mktemp -d "${TMPDIR:-/tmp}/starling-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

ok() { # ok CONDITION-EXIT-STATUS DESCRIPTION
    TAP_N=$((TAP_N + 1))
    if [ "$1" -eq 0 ]; then echo "ok $TAP_N - $2"; else echo "not ok $TAP_N - $2"; TAP_FAILED=$((TAP_FAILED + 1)); fi
}

# expect_fail CODE FRAGMENT DESCRIPTION -- COMMAND...: the command exits with CODE and its
# stderr contains FRAGMENT.
expect_fail() {
    code=$1; frag=$2; desc=$3; shift 4
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -eq "$code" ] && grep -qF -- "$frag" "$T/err"; then
        ok 0 "$desc"
    else
        ok 1 "$desc"
        echo "#   exit $rc (wanted $code); stderr: $(head -c 400 "$T/err")"
    fi
}

skip_all() { echo "1..0 # SKIP $1"; exit 0; }

plan_done() { echo "1..$TAP_N"; [ "$TAP_FAILED" -eq 0 ]; }
