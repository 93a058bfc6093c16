# postern — one non-recursive Makefile.
#   make            build ./postern
#   make test       unit tests and end-to-end tests
#   make unit       unit tests only
#   make e2e        end-to-end tests only (pytest; E2E_JOBS parallel workers, see below)
#   make e2e-san    end-to-end tests against build-san/postern (ASan+UBSan)
#   make deps       install the Debian packages in scripts/debian-packages.txt
#   make SAN=1      build with ASan+UBSan (into build-san/)
#   make CC=clang   build with clang
#   make fuzz       build the libFuzzer harnesses tests/fuzz/*.c into build-fuzz/ (clang)
#   make fuzz-smoke run each harness FUZZ_SECONDS (10) seconds on build-fuzz/corpus/<name>
CC      ?= cc
BUILD   ?= build
PKGS    := openssl sqlite3 libargon2 libcares zlib libxml-2.0 icu-uc
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
           -Wno-unused-parameter -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -Isrc $(shell pkg-config --cflags $(PKGS))
LDLIBS  += $(shell pkg-config --libs $(PKGS)) -lcrypt -lpthread
LDLIBS  += -lm # src/filter/bayes.c: exp, log
ifeq ($(SAN),1)
BUILD   := build-san
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

MODULES := core mime auth dns store policy filter smtp pop3 imap queue
LIB_SRC := $(foreach m,$(MODULES),$(wildcard src/$(m)/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC := $(wildcard src/cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_DIRS := $(wildcard tests/unit/*/)
UNIT_BIN  := $(patsubst tests/unit/%/,$(BUILD)/test_%,$(UNIT_DIRS))

all: postern

postern: $(BUILD)/postern
	cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/postern: $(CLI_OBJ) $(BUILD)/libpostern.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libpostern.a: $(LIB_OBJ)
	rm -f $@; ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

.SECONDEXPANSION:
$(BUILD)/test_%: $$(foreach f,$$(wildcard tests/unit/$$*/*.c),$(BUILD)/$$(basename $$(f)).o) $(BUILD)/libpostern.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BIN)
	@pass=0; fail=0; for t in $(UNIT_BIN); do \
	  if ./$$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; echo "unit binaries: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# The e2e suite runs in E2E_JOBS pytest-xdist workers (python3-pytest-xdist),
# one test file per worker at a time (--dist loadfile: a module's shared
# daemon stays in one worker; every daemon has its own 127.x.y.z address and
# free ports). Most of a test's time is waiting on sockets and timeouts, so
# 3 workers pay off even on 2 cores (more make the CPU-heavy files, e.g.
# test_durability under the sanitizers, crowd the timing-sensitive ones).
# E2E_JOBS=0, or no xdist: one process.
E2E_JOBS ?= 3
PYTEST   := /usr/bin/python3 -m pytest
E2E_ARGS ?= $(if $(filter-out 0,$(E2E_JOBS)),$(if $(shell /usr/bin/python3 -c 'import xdist' 2>/dev/null && echo y),-n $(E2E_JOBS) --dist loadfile))

e2e: postern
	$(PYTEST) -q $(E2E_ARGS) tests/e2e

# The sanitizer build's daemon; conftest.py fails a test whose daemon or CLI
# run wrote an ASan/UBSan (or LeakSanitizer) report.
e2e-san:
	$(MAKE) SAN=1 build-san/postern
	POSTERN_BIN=$(CURDIR)/build-san/postern $(PYTEST) -q $(E2E_ARGS) tests/e2e

test: unit e2e

# Fuzzing: every tests/fuzz/<name>.c is a libFuzzer harness, built into
# build-fuzz/<name> and linked with the parsers below (compiled for coverage
# into build-fuzz/). A harness that needs another object: add it to FUZZ_SRC.
# src/policy's pure files (no loop, DNS, pool or store): one line each.
FUZZ_POLICY  := src/policy/hdr.c
FUZZ_POLICY  += src/policy/spf_parse.c
FUZZ_POLICY  += src/policy/dkim_prim.c src/policy/dkim_sig.c
# src/filter's pure files: one line each.
FUZZ_POLICY  += src/filter/reasons.c
FUZZ_POLICY  += src/filter/cidr.c
FUZZ_POLICY  += src/filter/dnsbl.c
FUZZ_POLICY  += src/filter/fingerprint.c
FUZZ_POLICY  += src/filter/attach.c
FUZZ_POLICY  += src/filter/tokenize.c
FUZZ_POLICY  += src/filter/milter_proto.c
FUZZ_LIBS    := $(shell pkg-config --libs libcrypto)
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 10
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=gnu11 $(WARN) -D_GNU_SOURCE -Isrc -g -O1 $(FUZZ_SAN)
FUZZ_SRC     := $(addprefix src/,core/xmalloc.c core/buf.c core/log.c core/base64.c \
		core/config.c mime/addr.c mime/header.c auth/sasl.c smtp/parse.c smtp/data.c \
		smtp/reply.c pop3/parse.c dns/parse.c) $(wildcard src/mime/*.c) \
		$(wildcard src/imap/parse*.c) $(FUZZ_POLICY)
FUZZ_SRC     += src/policy/dmarc.c src/policy/psl.c
FUZZ_OBJ     := $(FUZZ_SRC:%.c=build-fuzz/%.o)
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/*.c))
FUZZ_LIBS    := -lcrypto # fuzz_srs: HMAC-SHA1 (its harness includes src/policy/srs.c)
FUZZ_LIBS    += $(shell pkg-config --libs icu-uc) # src/mime/subject.c: RFC 5051 through ICU

build-fuzz/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

build-fuzz/libfuzz.a: $(FUZZ_OBJ)
	rm -f $@; ar rcs $@ $^

build-fuzz/%: tests/fuzz/%.c build-fuzz/libfuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -MF $@.d -o $@ $< \
		build-fuzz/libfuzz.a $(FUZZ_LIBS)

fuzz: $(FUZZ_BIN)

# One line per harness, then "N passed, N failed"; crashes are kept in
# build-fuzz/crashes/ and the log of a failed run is shown.
fuzz-smoke: $(FUZZ_BIN)
	@pass=0; fail=0; mkdir -p build-fuzz/crashes build-fuzz/logs; \
	for t in $(FUZZ_BIN); do n=$${t#build-fuzz/}; c=build-fuzz/corpus/$$n; \
	  mkdir -p $$c; [ -d tests/fuzz/seeds/$$n ] && cp -f tests/fuzz/seeds/$$n/* $$c/ 2>/dev/null; \
	  if ./$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	       -artifact_prefix=build-fuzz/crashes/$$n- $$c >build-fuzz/logs/$$n.log 2>&1; then \
	    pass=$$((pass+1)); \
	    echo "fuzz $$n: ok ($$(sed -n 's/^stat::number_of_executed_units: *//p' \
	      build-fuzz/logs/$$n.log) runs in $(FUZZ_SECONDS) s, corpus $$(ls $$c | wc -l))"; \
	  else fail=$$((fail+1)); echo "fuzz $$n: FAILED (log build-fuzz/logs/$$n.log)"; \
	    tail -n 40 build-fuzz/logs/$$n.log; fi; \
	done; echo "fuzz targets: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

deps:
	scripts/install-deps build test

# format: only the lines changed against FORMAT_BASE (default HEAD: what is not committed;
# FORMAT_BASE=main on a branch), as most of the tree predates the formatter and a
# whole-tree pass (format-all) would rewrite ~5,000 lines that are fine as they are.
FORMAT_BASE ?= HEAD
format:
	git clang-format --force --extensions c,h $(FORMAT_BASE)

format-all:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-san postern

.PHONY: all unit e2e e2e-san test deps format format-all clean postern fuzz fuzz-smoke
.SECONDARY:
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d) $(FUZZ_BIN:=.d) \
	 $(wildcard $(BUILD)/tests/unit/*/*.d)
