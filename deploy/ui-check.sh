#!/usr/bin/env bash
# The dashboard (/ui/) in a real browser, end to end, on loopback and offline:
#
#   tools     Debian's chromium and chromium-driver (installed when missing), the
#             pinned Selenium in a cached virtualenv and the pinned axe-core from the
#             npm registry in the tools cache (deploy/lib/browser.sh)
#   build     cargo build [--release] --bin meterplane (MP_CHECK_PROFILE)
#   server    a fresh database, migrate, `meterplane demo` (three weeks of sample
#             usage, an admin and a read-only viewer), serve on a free loopback port
#   browser   tests/ui/check.py drives headless Chromium through WebDriver: sign in,
#             cards equal to the API's numbers, window switch, customer filter,
#             cursor paging, the drawer's cost breakdown, Live, the log's status,
#             agent and provider filters, tabs (paged, a selection across pages),
#             budgets (set, thresholds, reset, remove, block and unblock, each
#             checked in the API),
#             invoices (a draft equal to the API's, finalized, its printable document
#             and CSV, sent, voided), phone width, dark mode, a viewer without edit
#             controls, sign out, an axe-core accessibility audit of each main
#             screen (serious or critical violations fail); screenshots
#             of the main screens go to $MP_UI_SCREENSHOTS
#
# Knobs: MP_UI_SCREENSHOTS (default target/ui-screenshots); MP_UI_KEEP=1 keeps the
# work directory (server log); MP_TOOLS_CACHE as for the other checks; MP_CHECK_PROFILE
# release (default) or debug; MP_CHROMIUM / MP_CHROMEDRIVER to use another browser.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. deploy/lib/services.sh
. deploy/lib/checks.sh
. deploy/lib/browser.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/meterplane-ui.XXXXXX")
server_pid=
db_name=
redis_prefix=mp-ui-$$:
check_start=$(date +%s)
summary=()
export MP_UI_SCREENSHOTS=${MP_UI_SCREENSHOTS:-$root/target/ui-screenshots}

cleanup() {
  local rc=$?
  set +e
  stop_pid "$server_pid"
  if [ -n "$db_name" ]; then
    # In the background: DROP DATABASE waits for a checkpoint; the next run drops
    # what a run left behind (drop_stale_databases).
    (psql_admin -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null 2>&1 &)
  fi
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "${redis_prefix}*" 2>/dev/null \
    | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1
  if [ "$rc" -ne 0 ] && [ -f "$work/server.log" ]; then
    echo "--- last lines of server.log" >&2
    tail -n 25 "$work/server.log" >&2
  fi
  if [ "${MP_UI_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
  echo
  echo "ui-check: stage   time"
  printf 'ui-check: %s\n' "${summary[@]}"
  echo "ui-check: total $(( $(date +%s) - check_start ))s, exit $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stage() { # stage NAME COMMAND...: runs in this shell, stops the check when it fails
  local name=$1 start
  shift
  log "[$name]"
  start=$(date +%s)
  "$@"
  summary+=("$(printf '%-7s %4ss' "$name" $(( $(date +%s) - start )))")
}

tools() {
  ensure_chromium
  ensure_selenium
  ensure_axe
}

build() {
  build_meterplane
}

start_server() {
  local bin port
  bin=$(meterplane_bin "$root")
  ensure_services
  drop_stale_databases mp_ui
  db_name=mp_ui_$$
  psql_admin -c "CREATE DATABASE $db_name OWNER $MP_DB_USER" >/dev/null
  port=$(free_port)
  base_url=http://127.0.0.1:$port
  export DATABASE_URL=postgres://$MP_DB_USER:$MP_DB_PASSWORD@$PG_HOST:$PG_PORT/$db_name
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
  export MP_REDIS_PREFIX=$redis_prefix MP_BIND=127.0.0.1:$port MP_WORKERS=2 MP_METRICS_ADDR=127.0.0.1:0
  export MP_JWT_SECRET MP_API_KEY_PEPPER
  MP_JWT_SECRET=$(random_secret)
  MP_API_KEY_PEPPER=$(random_secret)
  export MP_LOG_FORMAT=json RUST_LOG=${MP_UI_RUST_LOG:-warn}
  "$bin" migrate
  "$bin" demo >"$work/demo.txt"
  demo_key=$(awk '/^api key:/ {print $3}' "$work/demo.txt")
  [ -n "$demo_key" ] || { cat "$work/demo.txt" >&2; echo "meterplane demo printed no key" >&2; return 1; }
  log "serving on $base_url (log: $work/server.log)"
  "$bin" serve >"$work/server.log" 2>&1 &
  server_pid=$!
  wait_http "$base_url/ui/" "$server_pid" "$work/server.log" 30
}

browser() {
  rm -rf "$MP_UI_SCREENSHOTS"
  MP_BASE_URL=$base_url MP_DEMO_KEY=$demo_key "$UI_VENV/bin/python" "$root/tests/ui/check.py"
}

log "ui-check (work directory $work)"
stage tools tools
stage build build
stage server start_server
stage browser browser
log "ui-check: passed; screenshots in $MP_UI_SCREENSHOTS"
