# postern — one non-recursive Makefile.
#   make            build ./postern
#   make test       unit tests and end-to-end tests
#   make unit       unit tests only
#   make e2e        end-to-end tests only (pytest)
#   make deps       install the Debian packages in scripts/debian-packages.txt
#   make SAN=1      build with ASan+UBSan (into build-san/)
#   make CC=clang   build with clang
CC      ?= cc
BUILD   ?= build
PKGS    := openssl sqlite3 libargon2
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
           -Wno-unused-parameter -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -Isrc $(shell pkg-config --cflags $(PKGS))
LDLIBS  += $(shell pkg-config --libs $(PKGS)) -lcrypt -lpthread
ifeq ($(SAN),1)
BUILD   := build-san
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

MODULES := core mime auth store smtp pop3
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

e2e: postern
	/usr/bin/python3 -m pytest -q tests/e2e

test: unit e2e

deps:
	scripts/install-deps build test

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-san postern

.PHONY: all unit e2e test deps format clean postern
.SECONDARY:
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
