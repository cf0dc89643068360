#!/bin/sh
# deps.sh [--check] GROUP...: make sure the Debian packages a make target needs are
# installed. As root it installs what is missing with apt-get; otherwise it prints the
# exact apt-get line to run and fails. With --check it never installs: it names what is
# missing and the line that installs it, and fails (plain `make` uses it). Groups: build,
# test, bench, fuzz (see docs/DEPENDENCIES.md for why each package is there).
set -e
check=0
if [ "${1:-}" = "--check" ]; then
    check=1
    shift
fi
build="libopenblas-dev liblapacke-dev zlib1g-dev libxxhash-dev libjansson-dev libmd-dev xxd"
test="$build perl python3 python3-numpy gzip valgrind openmpi-bin libopenmpi-dev chromium redis-server redis-tools
      python3-redis nutcracker tmux python3-prometheus-client python3-selenium chromium-driver
      python3-xxhash python3-venv python3-setuptools python3-wheel iproute2
      python3-hiredis nodejs node-redis ruby-redis php-cli php-redis libhiredis-dev prometheus-redis-exporter"
bench="$test libuv1-dev"
fuzz="clang libclang-rt-14-dev"
want=""
for g in "$@"; do
    case "$g" in
        build) want="$want $build" ;;
        test) want="$want $test" ;;
        bench) want="$want $bench" ;;
        fuzz) want="$want $fuzz" ;;
        *) echo "deps.sh: unknown group '$g'" >&2; exit 2 ;;
    esac
done
missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$check" = 1 ]; then
        echo "starling needs these Debian packages:$missing" >&2
        echo "install them with (make demo and make test do it for you as root):" >&2
        if [ "$(id -u)" = 0 ]; then echo "  apt-get install -y$missing" >&2
        else echo "  sudo apt-get install -y$missing" >&2; fi
        exit 1
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "starling needs these Debian packages:$missing" >&2
        echo "install them with:" >&2
        echo "  sudo apt-get install -y$missing" >&2
        exit 1
    fi
    echo "installing Debian packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
exit 0
