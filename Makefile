# Every command the README shows is a target here. Each target bootstraps what it needs:
# Node 24 (from npm when the machine's node is older than 22.12), npm packages, and
# redis-server, redis-tools, nginx and wrk (apt-get when root on Debian, otherwise the command to run).
# CLUSTER=auto (default): Docker Compose when a Docker engine answers, else local processes, for up, verify and
# compare-counters alike; CLUSTER=compose, local or swarm picks one. (make bench always runs local processes.)
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
CLUSTER ?= auto
export CLUSTER
# How Redis runs for up and verify: single (one server), sentinel (primary, 2 replicas, 3 Sentinels; local
# processes or Compose) or cluster (Redis Cluster; local processes only).
REDIS ?= single
export REDIS
# make verify: the app's WAIT after each increment (replicas that must acknowledge it).
REDIS_WAIT_REPLICAS ?= 0
# make verify knobs; CONCURRENCY is passed on only when set.
SCENARIO ?= all
COUNTER ?= atomic
USERS ?= 50
DURATION ?= 10

.PHONY: help deps system-deps docker-deps images up down ps logs kill start scale restart-redis failover-redis \
  config verify compare-counters bench bench-compare k8s-validate k8s-secrets typecheck test

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.installed ## install npm packages (npm ci)

# Chromium (Debian's package, for the browser test) and kubectl (test/k8s.test.ts renders deploy/k8s) only when
# the goal is `test`: `make up` needs neither.
system-deps:
	@infra/ensure-system-deps.sh redis-server redis-cli nginx wrk $(if $(filter test,$(MAKECMDGOALS)),chromium kubectl)

# Compose v2 (the docker plugin) when there is one, else Debian's docker-compose 1.29.
docker-deps:
	@if [ "$(CLUSTER)" != local ] && docker info >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then \
	  infra/ensure-system-deps.sh docker-compose docker-init; fi

images: deps system-deps docker-deps ## pull the official base images (or build offline stand-ins), build the app image
	@$(CLI) images

up: deps system-deps docker-deps ## start Redis (REDIS=single|sentinel|cluster), REPLICAS app replicas and nginx
	@$(CLI) up --replicas="$(REPLICAS)" --port="$(PORT)" --redis="$(REDIS)"

down: deps ## stop the cluster and remove its data
	@$(CLI) down

ps: deps ## list the replicas and every Redis node with its role
	@$(CLI) ps

logs: deps ## recent log lines of every component
	@$(CLI) logs

kill: deps ## stop replica REPLICA with SIGNAL=TERM (graceful) or KILL
	@$(CLI) kill --replica="$(REPLICA)" --signal="$(SIGNAL)"

start: deps ## start replica REPLICA again
	@$(CLI) start --replica="$(REPLICA)"

scale: deps ## change the number of replicas to REPLICAS, given explicitly (N= is deprecated); nginx follows
	@$(CLI) scale --replicas="$(if $(filter file,$(origin REPLICAS)),,$(REPLICAS))" $(if $(N),--deprecated-n="$(N)")

restart-redis: deps ## restart Redis (SIGNAL=TERM or KILL); the data survives through AOF
	@$(CLI) restart-redis --signal="$(SIGNAL)"

failover-redis: deps ## stop the Redis primary (SIGNAL=KILL or TERM) and wait for another to serve writes
	@$(CLI) failover-redis --signal="$(SIGNAL)"

start-redis-node: deps ## start a stopped Redis node NODE (a name from make ps) again; it rejoins as a replica
	@$(CLI) start-redis-node --name="$(NODE)"

config: deps ## check the app's configuration from the environment (as a replica would)
	@node services/app/src/check-config.ts

verify: deps system-deps docker-deps ## no count lost or doubled (SCENARIO= COUNTER= USERS= DURATION= CLUSTER= REDIS=)
	@node loadtest/harness/verify.ts --scenario "$(SCENARIO)" --counter "$(COUNTER)" \
	  --users "$(USERS)" --duration "$(DURATION)" --cluster "$(CLUSTER)" --redis "$(REDIS)" \
	  --wait-replicas "$(REDIS_WAIT_REPLICAS)" $(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)")

compare-counters: deps system-deps docker-deps ## session vs atomic counter: lost updates, SIGKILL x10, throughput
	@node loadtest/harness/compare-counters.ts --cluster "$(CLUSTER)"

bench: deps system-deps ## benchmarks as ratios to baselines run alongside (QUICK=1: short), in loadtest/reports/
	@QUICK=$(QUICK) node loadtest/bench/bench.ts

bench-compare: deps system-deps ## the exactly-once path at git ref BASE vs this checkout, interleaved: what it gained
	@BASE=$(BASE) node loadtest/bench/bench-compare.ts

k8s-validate: deps ## render deploy/k8s's overlays with kustomize, validate every object against the schema
	@infra/ensure-system-deps.sh kubectl
	@node infra/k8s-validate.ts

k8s-secrets: deps ## write deploy/k8s/base/secrets' missing files (random; git-ignored) for kustomize's secretGenerator
	@node infra/k8s-secrets.ts

typecheck: deps
	npx tsc -p tsconfig.json --noEmit

.PHONY: lint test-unit

# All three always run, so one pass shows every finding. ESLint's max-len covers .ts and .js; the awk line covers
# the files ESLint does not read, except URLs and nginx's JSON error bodies (nginx cannot concatenate strings).
lint: deps ## ESLint (typescript-eslint, type-aware), Prettier's check, and no line over 120 characters
	@npx eslint .; e=$$?; npx prettier --check --log-level warn .; p=$$?; \
	git ls-files Makefile '*.sh' '*.yml' '*.yaml' '*.conf' | xargs awk 'length > 120 && !/https?:\/\// && \
	  !/^ *return [0-9]+ \047\{"error"/ { print FILENAME ":" FNR ": " length " characters (at most 120)"; bad = 1 } \
	  END { exit bad }'; l=$$?; exit $$(( e || p || l ))

# vitest.config.ts: the unit project needs no nginx, no cluster and no Docker (a local redis-server).
test-unit: deps ## the fast tier, in seconds: pure tests and the app in-process on port 0
	@infra/ensure-system-deps.sh redis-server
	@rm -f loadtest/reports/vitest.json
	@npx vitest run --project unit; status=$$?; node infra/test-summary.ts loadtest/reports/vitest.json; exit $$status

# Lint and typecheck first (seconds), then one vitest run: the unit project, then integration.
test: deps system-deps docker-deps lint typecheck ## every test: unit, then integration (real processes, containers)
	@rm -f loadtest/reports/vitest.json
	@npx vitest run; status=$$?; node infra/test-summary.ts loadtest/reports/vitest.json; exit $$status
