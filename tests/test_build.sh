#!/bin/bash
# The build's promises: plain `make` installs nothing (scripts/deps.sh --check
# names the missing packages and the line that installs them, and stops, even as
# root); the version is set once (VERSION, passed to version.c); the man page is
# made from the help tables; make install puts a binary, its man page, the docs,
# the systemd unit, the sample config and the logrotate file under PREFIX
# (tests/test_packaging.py checks the last three without the slow portable build).
cd "$(dirname "$0")/.." || exit 1
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# A dpkg-query that knows no package and an apt-get that records being called.
mkdir -p "$T/bin"
printf '#!/bin/sh\nexit 1\n' > "$T/bin/dpkg-query"
printf '#!/bin/sh\necho called >> %s/apt-called\nexit 0\n' "$T" > "$T/bin/apt-get"
chmod +x "$T/bin/dpkg-query" "$T/bin/apt-get"
out=$(PATH="$T/bin:$PATH" scripts/deps.sh --check build 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "apt-get install -y libopenblas-dev" && [ ! -e "$T/apt-called" ]
ok $? "deps.sh --check names what is missing and the install line, fails, and installs nothing"
grep -q 'scripts/deps.sh --check build' Makefile && ! grep -E '^\$\(BUILD\)/\.deps:' -A2 Makefile | grep -v -- '--check' | grep -q 'deps.sh build'
ok $? "the build's dependency step only checks (make demo and make test install)"

# The version, once.
v=$(cat VERSION)
"$STARLING" version | grep -q "^starling $v"
ok $? "starling version says the VERSION file's $v"
[ "$(grep -lw 'STARLING_VERSION' src/*.c src/*.h | tr '\n' ' ')" = "src/version.c " ]
ok $? "only version.c sees STARLING_VERSION"

# The man page from the help tables, and make install (a portable build: slow,
# so only when asked: STARLING_TEST_INSTALL=1; the page itself always).
scripts/manpage.sh "$STARLING" > "$T/starling.1" && grep -q '^\.SS train' "$T/starling.1" &&
    grep -q -- '--unobserved-weight' "$T/starling.1" && grep -q '^\.SS serve' "$T/starling.1"
ok $? "the man page has every command's options, from the help tables"
if command -v man >/dev/null && man -l "$T/starling.1" > "$T/man.txt" 2>/dev/null; then
    grep -q "audiences, look-alikes and reach" "$T/man.txt"; ok $? "man renders it"
fi
if [ "${STARLING_TEST_INSTALL:-0}" = 1 ]; then
    make -s install PREFIX="$T/prefix" > "$T/install.log" 2>&1 &&
        [ -x "$T/prefix/bin/starling" ] && [ -s "$T/prefix/share/man/man1/starling.1" ] &&
        [ -s "$T/prefix/share/doc/starling/PROTOCOL.md" ] && ! grep -q -- '-march=native' build-install/.flags &&
        [ -s "$T/prefix/lib/systemd/system/starling.service" ] && [ -s "$T/prefix/etc/starling/starling.conf" ]
    ok $? "make install: a portable binary, its man page, the docs, the unit and the config under PREFIX"
    make -s install DESTDIR="$T/dest" > "$T/install-dest.log" 2>&1 &&
        [ -x "$T/dest/usr/local/bin/starling" ] && [ -s "$T/dest/etc/logrotate.d/starling" ] &&
        grep -q '^ExecStart=/usr/local/bin/starling serve --config /etc/starling/starling.conf' \
            "$T/dest/usr/local/lib/systemd/system/starling.service"
    ok $? "make install DESTDIR=...: the same under DESTDIR, the unit naming the installed paths"
fi
echo "1..$n"
exit $fail
