#!/usr/bin/env bash
# Proves openapi/openapi.json from the outside, with the tools a user of the API takes:
#
#   validate    openapi-spec-validator
#   lint        redocly lint with the rule set in redocly.yaml
#   build       cargo build [--release] --bin meterplane (MP_CHECK_PROFILE)
#   server      a fresh database, migrate, load-prices, create-operator, serve on a free
#               loopback port
#   served      the document it serves must equal the committed one
#   python      openapi-python-client generates a client; tests/sdk/python/smoke.py
#               drives the server with nothing but that client
#   ts-compile  openapi-typescript types + tests/sdk/typescript/smoke.ts (openapi-fetch)
#               compiled with `tsc --strict --noEmit`
#   ts-run      the same program compiled to JavaScript and run with node
#   fixture     tests/sdk/fixture.py: a tenant with real credentials and ids
#   fuzz        schemathesis examples, coverage and fuzzing phases, `--checks all`, as
#               that tenant, with the ids of its organization, project, key... pinned
#   stateful    schemathesis stateful phase, `--checks all`: call sequences along the
#               document's links, each id taken from an earlier response
#
# Tools: deploy/lib/tools.sh (pinned versions, cached outside the clone). Stages after
# `server` need it; the others run even when an earlier one failed, and the summary at
# the end lists each stage with its time. Exit status: non-zero when any stage failed.
#
# Knobs (environment):
#   MP_SDK_OPENAPI        document to check (default openapi/openapi.json); the served
#                         document is then not compared with it, and the accepted lint
#                         findings (.redocly.lint-ignore.yaml) do not apply to it
#   MP_SDK_FUZZ_SECONDS   time budget of the pinned-id schemathesis run (default 150)
#   MP_SDK_FUZZ_EXCLUDE_CHECKS  checks left out of the schemathesis runs (default: none)
#   MP_SDK_STATEFUL_SECONDS  time budget of the stateful schemathesis run (default 60)
#   MP_SDK_FUZZ_EXAMPLES  examples per operation and phase (default 25)
#   MP_SDK_FUZZ_WORKERS   schemathesis workers (default 2 on Python 3.12+, 1 on 3.11, whose
#                         ast module is not thread-safe: CPython gh-106905 makes parallel
#                         workers fail with "AST constructor recursion depth mismatch")
#   MP_SDK_STAGES         comma-separated subset of validate,lint,python,ts,fuzz,stateful
#                         to run (default: all; tools, build and server always run)
#   MP_SDK_SKIP_FUZZ=1    skip the schemathesis pass (quick local runs)
#   MP_SDK_FUZZ_ARGS      extra schemathesis arguments, word-split (e.g. to narrow a run:
#                         "--include-operation-id record_usage --mode negative")
#   MP_CHECK_PROFILE      release (default) or debug: the binary built and served
#                         (deploy/test.sh passes debug: the suite has just built it)
#   MP_SDK_KEEP=1         keep the work directory (generated clients, logs, reports)
#   MP_TOOLS_CACHE        where the tools live (default ~/.cache/meterplane-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. deploy/lib/services.sh
. deploy/lib/checks.sh
. deploy/lib/tools.sh

doc=$(realpath "${MP_SDK_OPENAPI:-openapi/openapi.json}")
fuzz_seconds=${MP_SDK_FUZZ_SECONDS:-150}
# Every check gates, including the two that compare what the schema admits with what
# the server accepts (positive_data_acceptance, negative_data_rejection). A comma-
# separated list here leaves checks out (for a quick look at something else).
fuzz_exclude_checks=${MP_SDK_FUZZ_EXCLUDE_CHECKS-}
stateful_seconds=${MP_SDK_STATEFUL_SECONDS:-60}
fuzz_examples=${MP_SDK_FUZZ_EXAMPLES:-25}
fuzz_workers=${MP_SDK_FUZZ_WORKERS:-}

work=$(mktemp -d "${TMPDIR:-/tmp}/meterplane-sdk.XXXXXX")
server_pid=
db_name=
redis_prefix=mp-sdk-$$:
summary=()
failures=0
check_start=$(date +%s)

print_summary() {
  [ ${#summary[@]} -gt 0 ] || return 0
  echo
  echo "sdk-check: stage        result  time"
  printf 'sdk-check: %s\n' "${summary[@]}"
  echo "sdk-check: total $(( $(date +%s) - check_start ))s"
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$server_pid" 2>/dev/null && kill -9 "$server_pid"
    wait "$server_pid" 2>/dev/null
  fi
  if [ -n "$db_name" ]; then
    psql_admin -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null 2>&1
  fi
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "${redis_prefix}*" 2>/dev/null \
    | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1
  if [ -n "${TOOLS_VENV:-}" ]; then
    "$TOOLS_VENV/bin/python" -m pip uninstall --quiet --yes meterplane-client >/dev/null 2>&1
  fi
  if [ "${MP_SDK_KEEP:-0}" = 1 ]; then
    log "kept $work"
  else
    rm -rf "$work"
  fi
  print_summary
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() { # record NAME RESULT SECONDS
  summary+=("$(printf '%-12s %-7s %4ss' "$1" "$2" "$3")")
}

# A prerequisite: runs in this shell (it sets variables for later stages); a failure
# ends the check.
prerequisite() {
  local name=$1 start
  shift
  log "[$name]"
  start=$(date +%s)
  if ! "$@"; then
    record "$name" FAILED $(( $(date +%s) - start ))
    log "[$name] FAILED: the stages after it cannot run"
    exit 1
  fi
  record "$name" ok $(( $(date +%s) - start ))
}

# An independent stage: runs in a subshell with errexit, so any failing command in it
# fails the stage; the check goes on with the next one.
stage() {
  local name=$1 start rc
  shift
  log "[$name]"
  start=$(date +%s)
  set +e
  (
    set -euo pipefail
    "$@"
  )
  rc=$?
  set -e
  last_stage_ok=0
  if [ "$rc" -eq 0 ]; then
    last_stage_ok=1
    record "$name" ok $(( $(date +%s) - start ))
    log "[$name] ok"
  else
    record "$name" FAILED $(( $(date +%s) - start ))
    failures=$((failures + 1))
    log "[$name] FAILED"
  fi
  return 0
}

wanted() {
  case ",${MP_SDK_STAGES:-validate,lint,python,ts,fuzz,stateful}," in
    *",$1,"*) return 0 ;;
    *) return 1 ;;
  esac
}

skip() {
  record "$1" skipped 0
  log "[$1] skipped: $2"
}

# --- stages -------------------------------------------------------------------------

validate() {
  openapi-spec-validator --validation-errors all "$doc"
}

lint() {
  redocly lint --config "$root/redocly.yaml" --format stylish --max-problems 500 "$doc"
}

build() {
  build_meterplane
}

start_server() {
  local bin port
  bin=$(meterplane_bin "$root")
  ensure_services
  drop_stale_databases mp_sdk
  db_name=mp_sdk_$$
  psql_admin -c "CREATE DATABASE $db_name OWNER $MP_DB_USER" >/dev/null
  port=$(free_port)
  base_url=http://127.0.0.1:$port
  operator_email=operator@sdk-check.local
  operator_password=$(random_secret)
  export DATABASE_URL=postgres://$MP_DB_USER:$MP_DB_PASSWORD@$PG_HOST:$PG_PORT/$db_name
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
  export MP_REDIS_PREFIX=$redis_prefix MP_BIND=127.0.0.1:$port MP_WORKERS=2 MP_METRICS_ADDR=127.0.0.1:0
  export MP_JWT_SECRET MP_API_KEY_PEPPER
  MP_JWT_SECRET=$(random_secret)
  MP_API_KEY_PEPPER=$(random_secret)
  export MP_JWT_TTL_SECS=3600 MP_DATA_STORAGE_PRICE_PER_MTOK=0.01 MP_SIGNUP_ENABLED=true
  # The live request log streams until it expires: short, so clients and fuzzers that
  # read a whole response get one.
  export MP_LIVE_MAX_STREAM_SECS=2
  export MP_LOG_FORMAT=json RUST_LOG=${MP_SDK_RUST_LOG:-warn}

  log "database $db_name: migrate, load prices, create the operator"
  "$bin" migrate
  "$bin" load-prices
  MP_OPERATOR_PASSWORD=$operator_password "$bin" create-operator --email "$operator_email" </dev/null

  log "serving on $base_url (log: $work/server.log)"
  "$bin" serve >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 150); do
    if curl -fsS "$base_url/healthz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "the server exited during start-up:" >&2
      tail -n 20 "$work/server.log" >&2
      return 1
    fi
    sleep 0.2
  done
  curl -fsS "$base_url/healthz" >/dev/null || { echo "no /healthz after 30 s" >&2; return 1; }
}

# The tools read the committed file (what SDK users take); the server must serve the same.
served() {
  curl -fsS "$base_url/openapi.json" | jq -S . >"$work/served.json"
  jq -S . "$doc" >"$work/committed.json"
  if ! diff -u --label openapi/openapi.json --label "served /openapi.json" \
    "$work/committed.json" "$work/served.json" >"$work/served.diff"; then
    head -n 40 "$work/served.diff"
    echo "the server's /openapi.json differs from openapi/openapi.json (above); regenerate it:" \
      "cargo run -- openapi --write openapi/openapi.json" >&2
    return 1
  fi
}

python_client() {
  local out=$work/python-client
  log "generating the Python client (openapi-python-client)"
  (cd "$work" && openapi-python-client generate --path "$doc" \
    --config "$root/tests/sdk/python/generator.yaml" --meta setup \
    --output-path "$out" --fail-on-warning)
  "$TOOLS_VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall "$out"
  log "running tests/sdk/python/smoke.py against $base_url"
  MP_BASE_URL=$base_url "$TOOLS_VENV/bin/python" "$root/tests/sdk/python/smoke.py"
}

ts_dir=$work/typescript

ts_compile() {
  mkdir -p "$ts_dir"
  cp "$root/tests/sdk/typescript/smoke.ts" "$root/tests/sdk/typescript/tsconfig.json" "$ts_dir/"
  ln -s "$TOOLS_NODE_MODULES" "$ts_dir/node_modules"
  printf '{ "private": true, "type": "module" }\n' >"$ts_dir/package.json"
  cd "$ts_dir"
  log "generating TypeScript types (openapi-typescript)"
  openapi-typescript "$doc" --output schema.d.ts
  log "tsc --strict --noEmit"
  tsc --project . --strict --noEmit
}

ts_run() {
  cd "$ts_dir"
  tsc --project . --strict --outDir dist
  log "running the compiled program against $base_url"
  MP_BASE_URL=$base_url node dist/smoke.js
}

make_fixture() {
  MP_BASE_URL=$base_url MP_OPERATOR_EMAIL=$operator_email MP_OPERATOR_PASSWORD=$operator_password \
    python3 "$root/tests/sdk/fixture.py" "$work/fixture.env"
  # shellcheck disable=SC1091
  . "$work/fixture.env"
  export MP_SDK_TENANT_TOKEN MP_SDK_OPERATOR_TOKEN MP_SDK_API_KEY MP_SDK_USER_ID MP_SDK_INVITATION_ID \
    MP_SDK_ORG_ID MP_SDK_PROJECT_ID MP_SDK_KEY_ID MP_SDK_EVENT_ID MP_SDK_DISCOUNT_ID
}

# schemathesis_run CONFIG PHASES SECONDS REPORT [ARGS...]: one bounded run, every check,
# JUnit report kept in the work directory (MP_SDK_KEEP=1).
schemathesis_run() {
  local config=$1 phases=$2 seconds=$3 report=$4
  shift 4
  if [ -z "$fuzz_workers" ]; then
    if "$TOOLS_VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
      fuzz_workers=2
    else
      fuzz_workers=1
    fi
  fi
  cd "$work"
  SCHEMATHESIS_HOOKS=$root/tests/sdk/schemathesis_hooks.py timeout --kill-after=20 $((seconds + 90)) \
    schemathesis --no-color --config-file "$config" run "$doc" \
    --url "$base_url" \
    --phases "$phases" \
    --checks all \
    ${fuzz_exclude_checks:+--exclude-checks "$fuzz_exclude_checks"} \
    --workers "$fuzz_workers" \
    --max-examples "$fuzz_examples" \
    --max-time "$seconds" \
    --generation-database none \
    --report junit --report-dir "$work/schemathesis-$report" \
    "$@" \
    ${MP_SDK_FUZZ_ARGS:-} # word-split on purpose
}

# Operator endpoints run as the operator, every other one as the tenant: two runs, as
# one bearer token serves a whole run.
fuzz() {
  local rc=0 operator_seconds=$((fuzz_seconds / 5))
  cat "$root/tests/sdk/schemathesis.toml" "$root/tests/sdk/schemathesis-ids.toml" >"$work/schemathesis-ids.toml"
  log "schemathesis as the tenant (examples, coverage, fuzzing; ids pinned): $((fuzz_seconds - operator_seconds))s"
  MP_SDK_BEARER_TOKEN=$MP_SDK_TENANT_TOKEN schemathesis_run "$work/schemathesis-ids.toml" \
    examples,coverage,fuzzing $((fuzz_seconds - operator_seconds)) tenant --exclude-path-regex '^/v1/admin/' || rc=1
  log "schemathesis as the operator on /v1/admin/ (examples, coverage, fuzzing; ids pinned): ${operator_seconds}s"
  MP_SDK_BEARER_TOKEN=$MP_SDK_OPERATOR_TOKEN schemathesis_run "$work/schemathesis-ids.toml" \
    examples,coverage,fuzzing "$operator_seconds" operator --include-path-regex '^/v1/admin/' || rc=1
  return "$rc"
}

stateful() {
  log "schemathesis stateful as the tenant (ids from responses, along the document's links): ${stateful_seconds}s"
  # No ids pinned here (they flow along the links), only the opaque page cursor.
  { cat "$root/tests/sdk/schemathesis.toml"; printf '[parameters]\ncursor = ""\n'; } >"$work/schemathesis-stateful.toml"
  MP_SDK_BEARER_TOKEN=$MP_SDK_TENANT_TOKEN schemathesis_run "$work/schemathesis-stateful.toml" \
    stateful "$stateful_seconds" stateful --exclude-path-regex '^/v1/admin/'
}

# --- the run ------------------------------------------------------------------------

log "sdk-check: $doc (work directory $work)"
prerequisite tools ensure_tools
if wanted validate; then stage validate validate; else skip validate "not in MP_SDK_STAGES"; fi
if wanted lint; then stage lint lint; else skip lint "not in MP_SDK_STAGES"; fi
prerequisite build build
prerequisite server start_server
if [ -n "${MP_SDK_OPENAPI:-}" ]; then
  skip served "checking $doc (MP_SDK_OPENAPI), not the served document"
else
  stage served served
fi
if wanted python; then stage python python_client; else skip python "not in MP_SDK_STAGES"; fi
if wanted ts; then
  stage ts-compile ts_compile
  if [ "$last_stage_ok" = 1 ]; then
    stage ts-run ts_run
  else
    skip ts-run "ts-compile failed"
  fi
else
  skip ts "not in MP_SDK_STAGES"
fi
if [ "${MP_SDK_SKIP_FUZZ:-0}" = 1 ]; then
  skip fuzz "MP_SDK_SKIP_FUZZ=1"
  skip stateful "MP_SDK_SKIP_FUZZ=1"
elif wanted fuzz || wanted stateful; then
  prerequisite fixture make_fixture
  if wanted fuzz; then stage fuzz fuzz; else skip fuzz "not in MP_SDK_STAGES"; fi
  if wanted stateful; then stage stateful stateful; else skip stateful "not in MP_SDK_STAGES"; fi
else
  skip fuzz "not in MP_SDK_STAGES"
  skip stateful "not in MP_SDK_STAGES"
fi

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "sdk-check: the server died during the run; its last lines:" >&2
  tail -n 30 "$work/server.log" >&2
  failures=$((failures + 1))
fi
if [ "$failures" -gt 0 ]; then
  log "sdk-check: $failures stage(s) failed"
  exit 1
fi
log "sdk-check: every stage passed"
