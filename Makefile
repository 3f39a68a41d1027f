# Every command the README shows is a target here. Each target bootstraps what it needs:
# Node 24 (from npm when the machine's node is older than 22.12), npm packages, and
# redis-server/nginx (apt-get when root on Debian, otherwise the command to run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

NODE_BIN := $(shell infra/node-env.sh)
ifeq ($(NODE_BIN),)
$(error could not find or bootstrap Node >= 22.12; see the message above)
endif
export PATH := $(NODE_BIN):$(PATH)

REPLICAS ?= 3
PORT ?= 8080
REPLICA ?= 1
SIGNAL ?= TERM
CLI := node infra/cli.ts

.PHONY: help deps system-deps up down ps logs kill start scale restart-redis typecheck test bench bench-compare

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.installed ## install npm packages (npm ci)

system-deps:
	@infra/ensure-system-deps.sh redis-server redis-cli nginx wrk

up: deps system-deps ## start Redis, REPLICAS app replicas and nginx on 127.0.0.1:PORT
	@$(CLI) up --replicas $(REPLICAS) --port $(PORT)

down: deps ## stop the cluster and remove its data
	@$(CLI) down

ps: deps ## list the replicas and whether they run
	@$(CLI) ps

logs: deps ## recent log lines of every component
	@$(CLI) logs

kill: deps ## stop replica REPLICA with SIGNAL=TERM (graceful) or KILL
	@$(CLI) kill --replica $(REPLICA) --signal $(SIGNAL)

start: deps ## start replica REPLICA again
	@$(CLI) start --replica $(REPLICA)

scale: deps ## change the number of replicas to N
	@$(CLI) scale --replicas $(N)

restart-redis: deps ## restart Redis (SIGNAL=TERM or KILL); the data survives through AOF
	@$(CLI) restart-redis --signal $(SIGNAL)

bench: deps system-deps ## benchmarks as ratios to baselines run alongside (QUICK=1: a short run); report in loadtest/reports/
	@QUICK=$(QUICK) node loadtest/bench/run.ts

bench-compare: deps system-deps ## the exactly-once path at git ref BASE vs this checkout, runs interleaved: what a change gained
	@BASE=$(BASE) node loadtest/bench/compare.ts

typecheck: deps
	npx tsc -p tsconfig.json --noEmit

test: deps system-deps typecheck ## run every test (unit, integration with real processes)
	npx vitest run
