# ngx_http_quota_module
#
#   make          build build/ngx_http_quota_module.so against nginx-dev
#   make test     unit tests (cmocka), a short fuzz run and integration tests
#   make fuzz-long  each libFuzzer target for FUZZ_TIME seconds (by hand)
#   make demo     Redis + nginx with the module in front of a mock LLM
#   make bench    wrk: plain proxy vs the gate vs the OpenResty way
#   make deb      build/deb/libnginx-mod-http-quota_VERSION_ARCH.deb

SHELL      := /bin/bash
TOP        := $(CURDIR)
BUILD      := $(TOP)/build
MODULE     := $(BUILD)/ngx_http_quota_module.so

PURE_SRCS  := $(wildcard src/quota_*.c)
PURE_HDRS  := $(wildcard src/quota_*.h)
UNIT_SRCS  := $(wildcard t/unit/test_*.c)
UNIT_BINS  := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))

UNIT_CFLAGS := -std=c99 -D_DEFAULT_SOURCE -g -O1 -Wall -Wextra -Werror -Isrc

# libFuzzer targets fuzz/fuzz_NAME.c, seeds in fuzz/seeds/NAME/
FUZZ_CC     := clang
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=all -Wall -Wextra -Werror -Isrc
FUZZ_SRCS   := $(wildcard fuzz/fuzz_*.c)
FUZZ_NAMES  := $(patsubst fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
FUZZ_BINS   := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
FUZZ_RUNS   := 20000
FUZZ_SEED   := 1
FUZZ_TIME   := 600
FUZZ_OPTS    = -timeout=10 -rss_limit_mb=2048 -artifact_prefix=$(BUILD)/fuzz/

.PHONY: all module test unit integration demo demo-stop bench clean migrate deb \
        fuzz fuzz-build fuzz-long

all: module

module:
	@scripts/deps build
	@scripts/build

$(BUILD)/unit/%: t/unit/%.c $(PURE_SRCS) $(PURE_HDRS) $(wildcard t/unit/*.h)
	@mkdir -p $(BUILD)/unit
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(PURE_SRCS) -lcmocka -ljansson -lz

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "# $$t"; $$t; done

$(BUILD)/fuzz/%: fuzz/%.c $(PURE_SRCS) $(PURE_HDRS)
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(PURE_SRCS) -ljansson -lz

fuzz-build: $(FUZZ_BINS)

# a short run with a fixed seed from a fresh corpus; a crash fails make
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_NAMES); do \
	    c=$(BUILD)/fuzz/corpus-$$t; log=$(BUILD)/fuzz/fuzz_$$t.log; \
	    rm -rf $$c; mkdir -p $$c; \
	    echo "# fuzz_$$t: $(FUZZ_RUNS) runs"; \
	    $(BUILD)/fuzz/fuzz_$$t -runs=$(FUZZ_RUNS) -seed=$(FUZZ_SEED) \
	        -dict=fuzz/$$t.dict $(FUZZ_OPTS) $$c fuzz/seeds/$$t \
	        >$$log 2>&1 || { tail -n 60 $$log; exit 1; }; \
	    tail -n 1 $$log; \
	done

# by hand: FUZZ_TIME seconds each, the corpus kept in fuzz/corpus-NAME/
fuzz-long: fuzz-build
	@set -e; for t in $(FUZZ_NAMES); do \
	    mkdir -p fuzz/corpus-$$t; \
	    $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -max_len=40000 \
	        -dict=fuzz/$$t.dict $(FUZZ_OPTS) fuzz/corpus-$$t fuzz/seeds/$$t; \
	done

integration: module
	prove -I t/lib t/

test:
	@scripts/deps test
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory integration

deb:
	@scripts/deps deb
	@scripts/deb

demo:
	@scripts/deps demo
	@$(MAKE) --no-print-directory module
	@scripts/demo start

demo-stop:
	@scripts/demo stop

bench:
	@scripts/deps bench
	@$(MAKE) --no-print-directory module
	@bench/run

# QUOTA_PG is a libpq conninfo, e.g. "host=127.0.0.1 dbname=quota user=postgres"
migrate:
	@scripts/migrate "$${QUOTA_PG:-host=127.0.0.1 port=5432 dbname=quota user=postgres}"

clean:
	rm -rf $(BUILD)

# the C side's local windows, for t/22-schema-units-zones.t to compare
# with quota.window_start/window_end
$(BUILD)/tools/tzwindow: t/tools/tzwindow.c src/quota_tz.c src/quota_tz_rule.c src/quota_period.c
	@mkdir -p $(BUILD)/tools
	$(CC) -std=c99 -D_DEFAULT_SOURCE -O1 -Wall -Wextra -Werror -Isrc -o $@ $^
