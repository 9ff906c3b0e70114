#!/usr/bin/env bash
# Command 2 of the README: the whole test suite against real PostgreSQL and Redis,
# then the SDK check (deploy/sdk-check.sh), the LiteLLM check
# (deploy/litellm-check.sh) and the dashboard in a browser (deploy/ui-check.sh). Each test clones its own database from a
# migrated template and uses its own Redis key prefix, so tests run in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib/services.sh

ensure_services
export MP_TEST_DATABASE_URL=${MP_TEST_DATABASE_URL:-postgres://$MP_DB_USER:$MP_DB_PASSWORD@$PG_HOST:$PG_PORT/postgres}
export MP_TEST_REDIS_URL=${MP_TEST_REDIS_URL:-$REDIS_URL}

# Each run names its per-test databases mp_test_<run>_<uuid>, <run> being this
# script's PID, so that runs in several checkouts at once leave each other's alone.
export MP_TEST_RUN=$$
drop_test_databases() {
  # This run's per-test databases, those of runs whose process is gone, unnamed ones
  # nobody is connected to (from `cargo test` run directly), half-built templates, and
  # templates another role owns (the tests' role could not clone those).
  local db run
  for db in $(psql_admin -c "SELECT datname FROM pg_database d WHERE datname LIKE 'mp\_test\_%'
        AND (datname ~ '^mp_test_[0-9]+_' OR NOT EXISTS
             (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname))"); do
    run=${db#mp_test_}
    run=${run%%_*}
    if [[ $run =~ ^[0-9]+$ ]] && [ "$run" != "$MP_TEST_RUN" ] && kill -0 "$run" 2>/dev/null; then
      continue
    fi
    psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  for db in $(psql_admin -c "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
      WHERE (datname LIKE 'mp\_tpl\_%\_building' OR (datname LIKE 'mp\_tpl\_%' AND r.rolname <> '$MP_DB_USER'))
        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"); do
    psql_admin -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
}
drop_test_databases
trap drop_test_databases EXIT

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi

# The outside checks below run the debug binary the suite has just built, unless
# MP_CHECK_PROFILE says otherwise (run alone, they build and run a release binary).
export MP_CHECK_PROFILE=${MP_CHECK_PROFILE:-debug}
# The suite's build made target/debug/meterplane (its tests run it): the checks reuse it.
export MP_CHECK_BINARY_BUILT=1

# Then the OpenAPI document from the outside: validator, linter, generated Python and
# TypeScript clients against the server, schemathesis (deploy/sdk-check.sh).
# MP_SKIP_SDK_CHECK=1 skips it for a quick local run; it is skipped too when arguments
# narrow the suite to some tests.
if [ "${MP_SKIP_SDK_CHECK:-0}" = 1 ]; then
  log "skipping the SDK check (MP_SKIP_SDK_CHECK=1)"
elif [ $# -gt 0 ]; then
  log "skipping the SDK check (a narrowed test run)"
else
  bash deploy/sdk-check.sh
fi

# Then Meterplane behind a real LiteLLM proxy, both integrations, end to end
# (deploy/litellm-check.sh). MP_SKIP_LITELLM_CHECK=1 skips it; so does a narrowed run.
if [ "${MP_SKIP_LITELLM_CHECK:-0}" = 1 ]; then
  log "skipping the LiteLLM check (MP_SKIP_LITELLM_CHECK=1)"
elif [ $# -gt 0 ]; then
  log "skipping the LiteLLM check (a narrowed test run)"
else
  bash deploy/litellm-check.sh
fi

# Then the dashboard in headless Chromium (deploy/ui-check.sh), against the demo data.
# MP_SKIP_UI_CHECK=1 skips it; so does a narrowed run.
if [ "${MP_SKIP_UI_CHECK:-0}" = 1 ]; then
  log "skipping the dashboard check (MP_SKIP_UI_CHECK=1)"
elif [ $# -gt 0 ]; then
  log "skipping the dashboard check (a narrowed test run)"
else
  bash deploy/ui-check.sh
fi
