# starling: one Makefile for everything.
#
#   make            build ./starling
#   make demo       install what is missing, make the default synthetic data,
#                   train models/default.model and show a few users' top segments
#   make test       install what is missing, build, run the whole suite (prove)
#   make asan       the same suite built with AddressSanitizer + UBSan
#   make valgrind   the C unit tests under valgrind memcheck (no error, no leak)
#   make fuzz       every fuzz target for FUZZ_SECONDS (libFuzzer, clang)
#   make soak       load and soak of the server (60 s, 200 clients, 100 reloads)
#   make soak-journal  the journal's kill loop at length: SIGKILL a server
#                   under a stream of writes SOAK_ITERATIONS times (200)
#   make bench      benchmarks (not part of the tests), see bench/README.md
#   make install    build a portable binary (build-install/, no -march=native) and
#                   install it, its man page and the docs under $(PREFIX), and the
#                   systemd unit, sample config and logrotate file (install-service)
#   make clean      remove every build product
#
# Plain `make` installs nothing: when a Debian package is missing it names it
# and the apt-get line that installs it, and stops. `make demo` and `make test`
# install what they need (as root; otherwise they print the line too).
#
# The development build (./starling) is tuned to this machine (-march=native)
# so that the benchmarks measure what the CPU can do; `make install` builds
# for any x86-64 (ARCH=-mtune=generic) in build-install/.
#
# Variables: PREFIX (/usr/local), DESTDIR, SYSCONFDIR (/etc), ARCH (-march=native), CFLAGS (-O3 -g),
# BUILD (build), JOBS (parallel test files, 2), MPI (1 when Open MPI's mpi.h
# is there), VERSION (from the VERSION file and `git describe`).

PREFIX ?= /usr/local
CC = gcc
# -Wno-psabi: the 8-float vector helpers are static inline, so a portable build
# (no AVX) changing how they would be passed across files changes nothing.
ARCH ?= -march=native
CFLAGS ?= -O3 -g
WARN = -std=c11 -ffp-contract=fast -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-sign-compare \
       -Wno-psabi
CPPFLAGS += -D_GNU_SOURCE -Isrc
LDLIBS = -llapacke -lopenblas -ljansson -lz -lmd -lpthread -lm
# MPI training is built in when Open MPI's development files are installed
# (mpicc compiles a file that includes mpi.h: openmpi-bin alone has mpicc but
# not the header); MPI=0 leaves it out. The plain build needs no MPI.
MPI ?= $(shell printf '\043include <mpi.h>\n' | mpicc -E -x c - >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(MPI),1)
CPPFLAGS += -DSTARLING_MPI $(shell mpicc --showme:compile)
LDLIBS += $(shell mpicc --showme:link)
endif
BUILD ?= build
JOBS ?= 2
# The version: the VERSION file, and where this is a git checkout, what `git
# describe` says of it (commits since the tag, a dirty tree). Only version.c sees it.
VERSION ?= $(shell v=$$(cat VERSION); d=$$(git describe --always --dirty 2>/dev/null); echo "$$v$${d:+ ($$d)}")
BIN = $(if $(filter build,$(BUILD)),starling,$(BUILD)/starling)

LIB_SRC = $(filter-out src/main.c,$(wildcard src/*.c))
# The page's files (web/) are compiled into the binary as a generated C table.
WEB_FILES = $(sort $(wildcard web/*.html web/*.js web/*.css web/*.svg))
LIB_OBJ = $(LIB_SRC:src/%.c=$(BUILD)/%.o) $(BUILD)/web_assets.o
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
FUZZ_NAMES = $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_REPLAY = $(FUZZ_NAMES:%=$(BUILD)/fuzz/replay_%)

.PHONY: all demo test check asan valgrind soak soak-journal bench fuzz install install-service clean deps-build deps-test deps-fuzz \
	deps-bench FORCE
.DELETE_ON_ERROR:

all: $(BIN)

deps-build:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

# Checks, never installs (scripts/deps.sh --check): demo and test install.
$(BUILD)/.deps: scripts/deps.sh
	@scripts/deps.sh --check build
	@mkdir -p $(BUILD) && touch $@

# V=1 shows the whole commands.
Q = $(if $(V),,@)

# Everything is rebuilt when the flags change (MPI appearing, say).
FLAGS_NOW = $(CC) $(WARN) $(ARCH) $(CFLAGS) $(CPPFLAGS) $(LDFLAGS) $(LDLIBS)
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(FLAGS_NOW)' | cmp -s - $@ || echo '$(FLAGS_NOW)' > $@

# Header dependencies come from the compiler (-MMD -MP, the .d files).
$(BUILD)/%.o: src/%.c $(BUILD)/.deps $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(WARN) $(ARCH) $(CFLAGS) $(CPPFLAGS) -MMD -MP -c $< -o $@

# The version reaches version.c alone, and it is rebuilt when the version changes.
$(BUILD)/.version: FORCE
	@mkdir -p $(BUILD)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
$(BUILD)/version.o: src/version.c $(BUILD)/.version $(BUILD)/.deps $(BUILD)/.flags
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(WARN) $(ARCH) $(CFLAGS) $(CPPFLAGS) -DSTARLING_VERSION='"$(VERSION)"' -MMD -MP -c $< -o $@

-include $(wildcard $(BUILD)/*.d $(BUILD)/tests/*.d $(BUILD)/fuzz/*.d)

$(BUILD)/web_assets.c: $(WEB_FILES) scripts/embed_web.sh $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(Q)scripts/embed_web.sh $@ $(WEB_FILES)

$(BUILD)/web_assets.o: $(BUILD)/web_assets.c src/api.h $(BUILD)/.flags
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(WARN) $(ARCH) $(CFLAGS) $(CPPFLAGS) -c $< -o $@

$(BUILD)/libstarling.a: $(LIB_OBJ)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BIN): $(BUILD)/main.o $(BUILD)/libstarling.a
	@$(if $(V),,echo "  LINK  $@")
	$(Q)$(CC) $(ARCH) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libstarling.a $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(WARN) $(ARCH) $(CFLAGS) $(CPPFLAGS) -Itests -MMD -MP -o $@ $< $(BUILD)/libstarling.a $(LDFLAGS) $(LDLIBS)

# Every fuzz target, linked with a plain main that replays files: `make test`
# replays the committed corpus and past crash inputs with them.
$(BUILD)/fuzz/replay_%: fuzz/fuzz_%.c fuzz/replay.c $(BUILD)/libstarling.a $(BUILD)/.flags
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(WARN) $(ARCH) $(CFLAGS) $(CPPFLAGS) -Ifuzz -MMD -MP -o $@ $< fuzz/replay.c $(BUILD)/libstarling.a $(LDFLAGS) $(LDLIBS)

# The suite: C unit tests (TAP), then the command-line, numpy and real-data
# tests, all run by prove. STARLING, TEST_BIN and FUZZ_BIN tell the scripts what to run;
# TEST_OUT is where they leave what a person may want to look at (the browser
# test writes its screenshot there).
check: $(BIN) $(TEST_BIN) $(FUZZ_REPLAY)
	@mkdir -p $(BUILD)/test-output
	$(Q)STARLING=$(abspath $(BIN)) TEST_BIN=$(abspath $(BUILD))/tests FUZZ_BIN=$(abspath $(BUILD))/fuzz \
	    TEST_OUT=$(abspath $(BUILD))/test-output \
	    prove -j$(JOBS) --exec '' $(TEST_BIN) $(wildcard tests/test_*.sh tests/test_*.py)

test: deps-test
	@$(MAKE) --no-print-directory check

asan: deps-test
	@STARLING_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(MAKE) --no-print-directory check BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined \
	    -fno-sanitize-recover=all -fno-omit-frame-pointer" LDFLAGS="-fsanitize=address,undefined"

# valgrind memcheck over the C unit tests, built for AVX2 (valgrind 3.19 does
# not know AVX-512): any error or leak fails the run.
VG_TESTS = $(TEST_SRC:tests/%.c=build-vg/tests/%)
valgrind: deps-test
	@$(MAKE) --no-print-directory BUILD=build-vg ARCH=-march=x86-64-v3 CFLAGS="-O1 -g" $(VG_TESTS)
	@fail=0; for t in $(VG_TESTS); do \
	    if valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	        --show-leak-kinds=definite,indirect -q $$t > $$t.valgrind 2>&1; then \
	        echo "valgrind ok     $$t"; else echo "valgrind FAILED $$t (see $$t.valgrind)"; fail=1; fi; \
	done; exit $$fail

# Load and soak (not in make test, which runs a short version): 200 clients
# pipelined for 60 s, a connection flood, slow clients, 100 reloads under load.
soak: deps-test $(BIN)
	@STARLING=$(abspath $(BIN)) tests/soak.py --seconds 60 --clients 200 --reloads 100

# The kill loop of tests/test_journal_crash.py, long: every acknowledged write
# must survive each SIGKILL, and no forgotten user may come back.
SOAK_ITERATIONS ?= 200
soak-journal: deps-test $(BIN)
	$(Q)STARLING=$(abspath $(BIN)) STARLING_KILL_ITERATIONS=$(SOAK_ITERATIONS) STARLING_KILL_SECONDS=2 \
	    /usr/bin/python3 tests/test_journal_crash.py

demo: deps-build $(BIN)
	@scripts/demo.sh

$(BUILD)/bench/floors: bench/floors.c $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(WARN) $(ARCH) -O2 $(CPPFLAGS) -o $@ $< -lopenblas -lpthread

bench: deps-bench $(BIN) $(BUILD)/bench/floors
	@bench/run.sh

deps-bench:
	@scripts/deps.sh bench

# libFuzzer (clang) with ASan and UBSan: each target for FUZZ_SECONDS, from
# the committed seeds (fuzz/corpus/NAME) plus what earlier runs found
# (fuzz/out/NAME, not committed). A crash input lands in fuzz/out/; once the
# bug is fixed it goes into fuzz/crashes/NAME, which `make test` replays.
FUZZ_SECONDS ?= 60
fuzz: deps-fuzz
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang ARCH=-march=native \
	    CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" build-fuzz/libstarling.a
	@set -e; for t in $(FUZZ_NAMES); do \
	    clang $(ARCH) -O1 -g -fsanitize=fuzzer,address,undefined $(CPPFLAGS) -Ifuzz -o build-fuzz/fuzz_$$t \
	        fuzz/fuzz_$$t.c build-fuzz/libstarling.a $(LDLIBS); \
	    mkdir -p fuzz/out/$$t; \
	    echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	    build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
	        -artifact_prefix=fuzz/out/crash-$$t- fuzz/out/$$t fuzz/corpus/$$t 2>&1 | tail -3; \
	done

deps-fuzz:
	@scripts/deps.sh test fuzz

# A portable build (any x86-64: OpenBLAS picks its own kernels at run time),
# the man page made from the binary's own help tables, and the docs; then
# install-service: the systemd unit (its paths rewritten for PREFIX and
# SYSCONFDIR), the logrotate file and the sample config, which goes to
# SYSCONFDIR/starling/starling.conf only when there is none (an operator's
# file is never overwritten) and always to PREFIX/share/doc/starling/examples.
SYSCONFDIR ?= $(if $(filter /usr /usr/local,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR ?= $(PREFIX)/lib/systemd/system
install:
	@$(MAKE) --no-print-directory BUILD=build-install ARCH=-mtune=generic build-install/starling \
	    build-install/starling.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/doc/starling
	install -m 755 build-install/starling $(DESTDIR)$(PREFIX)/bin/starling
	install -m 644 build-install/starling.1 $(DESTDIR)$(PREFIX)/share/man/man1/starling.1
	install -m 644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/starling/
	@$(MAKE) --no-print-directory install-service

install-service:
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/starling $(DESTDIR)$(SYSCONFDIR)/logrotate.d \
	    $(DESTDIR)$(PREFIX)/share/doc/starling/examples
	sed -e 's|/usr/local/bin/starling|$(PREFIX)/bin/starling|' -e 's|/etc/starling/|$(SYSCONFDIR)/starling/|' \
	    packaging/starling.service > $(DESTDIR)$(UNITDIR)/starling.service
	chmod 644 $(DESTDIR)$(UNITDIR)/starling.service
	install -m 644 packaging/logrotate.d/starling $(DESTDIR)$(SYSCONFDIR)/logrotate.d/starling
	install -m 644 packaging/starling.conf packaging/starling.service $(DESTDIR)$(PREFIX)/share/doc/starling/examples/
	install -m 644 packaging/logrotate.d/starling $(DESTDIR)$(PREFIX)/share/doc/starling/examples/logrotate.starling
	test -e $(DESTDIR)$(SYSCONFDIR)/starling/starling.conf || \
	    install -m 640 packaging/starling.conf $(DESTDIR)$(SYSCONFDIR)/starling/starling.conf

$(BUILD)/starling.1: $(BIN) scripts/manpage.sh
	$(Q)scripts/manpage.sh $(abspath $(BIN)) > $@

clean:
	rm -rf build build-asan build-fuzz build-vg build-install starling
