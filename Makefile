# ngx_http_quota_module
#
#   make          build build/ngx_http_quota_module.so against nginx-dev
#   make test     unit tests (cmocka) and integration tests (prove t/)
#   make demo     Redis + nginx with the module in front of a mock LLM
#   make bench    wrk: plain proxy vs the gate vs the OpenResty way

SHELL      := /bin/bash
TOP        := $(CURDIR)
BUILD      := $(TOP)/build
MODULE     := $(BUILD)/ngx_http_quota_module.so

PURE_SRCS  := $(wildcard src/quota_*.c)
PURE_HDRS  := $(wildcard src/quota_*.h)
UNIT_SRCS  := $(wildcard t/unit/test_*.c)
UNIT_BINS  := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))

UNIT_CFLAGS := -std=c99 -D_DEFAULT_SOURCE -g -O1 -Wall -Wextra -Werror -Isrc

.PHONY: all module test unit integration demo demo-stop bench clean migrate

all: module

module:
	@scripts/deps build
	@scripts/build

$(BUILD)/unit/%: t/unit/%.c $(PURE_SRCS) $(PURE_HDRS)
	@mkdir -p $(BUILD)/unit
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(PURE_SRCS) -lcmocka -ljansson

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "# $$t"; $$t; done

integration: module
	prove -I t/lib t/

test:
	@scripts/deps test
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

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
