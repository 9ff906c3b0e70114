#!/usr/bin/env bash
# Meterplane behind a real LiteLLM proxy, end to end, on loopback and offline:
#
#   tools     the pinned LiteLLM proxy, a2a-sdk and openai in a cached virtualenv
#             (deploy/lib/litellm.sh), and the integration package of this clone
#   unit      the integration's unit tests (integrations/litellm/tests)
#   build     cargo build [--release] --bin meterplane (MP_CHECK_PROFILE)
#   server    a fresh database, migrate, load-prices, serve on a free loopback port;
#             two tenants signed up through the API, each with a project and a key
#   proxy     a LiteLLM proxy on a free loopback port with mock models (a chat model,
#             a model whose mock reports cached tokens, a failing model, a two-deployment
#             model whose first deployment fails), an A2A agent answering through a
#             mock model, and both integrations: the callback (meterplane_litellm.callback,
#             tenant "callback", authorize on) and LiteLLM's generic_api logger pointed
#             at POST /v1/integrations/litellm/logs (tenant "generic")
#   e2e       integrations/litellm/e2e/check.py drives the proxy with the openai client
#             and the A2A SDK, polls both tenants' spend logs (bounded) and checks every
#             mapped field and the exact cost; then a hard customer budget (429 with
#             Meterplane's reason) and a blocked customer (403)
#
# Knobs: MP_LITELLM_KEEP=1 keeps the work directory (configs, logs); MP_TOOLS_CACHE as
# for the SDK check; MP_LITELLM_WAIT_SECONDS bounds each wait for recorded events (30);
# MP_CHECK_PROFILE release (default) or debug, the binary built and served.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. deploy/lib/services.sh
. deploy/lib/checks.sh
. deploy/lib/litellm.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/meterplane-litellm.XXXXXX")
server_pid=
proxy_pid=
db_name=
redis_prefix=mp-litellm-$$:
check_start=$(date +%s)
summary=()

cleanup() {
  local rc=$?
  set +e
  stop_pid "$proxy_pid"
  stop_pid "$server_pid"
  if [ -n "$db_name" ]; then
    # In the background: DROP DATABASE waits for a checkpoint, which on a busy machine
    # takes minutes; the next run drops what a run left behind (drop_stale_databases).
    (psql_admin -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null 2>&1 &)
  fi
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "${redis_prefix}*" 2>/dev/null \
    | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1
  if [ "$rc" -ne 0 ]; then
    for f in server.log proxy.log; do
      [ -f "$work/$f" ] && { echo "--- last lines of $f" >&2; tail -n 25 "$work/$f" >&2; }
    done
  fi
  if [ "${MP_LITELLM_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
  echo
  echo "litellm-check: stage  time"
  printf 'litellm-check: %s\n' "${summary[@]}"
  echo "litellm-check: total $(( $(date +%s) - check_start ))s, exit $rc"
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
  summary+=("$(printf '%-6s %4ss' "$name" $(( $(date +%s) - start )))")
}

# --- stages -----------------------------------------------------------------------------

unit() {
  (cd integrations/litellm && LITELLM_LOCAL_MODEL_COST_MAP=True "$LITELLM_VENV/bin/python" -m unittest discover -s tests)
}

build() {
  build_meterplane
}

# Signs up an owner with an organization, makes a credits project and a key; writes
# MP_<NAME>_TOKEN/_ORG/_PROJECT/_KEY to $work/tenants.env.
make_tenant() {
  local name=$1 upper email password token org project key
  upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
  email="$name-$$@litellm-check.local"
  password=$(random_secret)
  # Sign-up answers 202 (check your email) and signs nobody in; an unverified account
  # may act on the organization it creates, which is all this check needs.
  curl -fsS "$base_url/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" >/dev/null
  token=$(curl -fsS "$base_url/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" | jq -r .accessToken)
  org=$(curl -fsS "$base_url/v1/orgs" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"name\":\"LiteLLM $name\"}" | jq -r .id)
  project=$(curl -fsS "$base_url/v1/orgs/$org/projects" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name":"LiteLLM","mode":"credits"}' | jq -r .id)
  key=$(curl -fsS "$base_url/v1/orgs/$org/projects/$project/keys" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name":"litellm proxy"}' | jq -r .secret)
  {
    echo "export MP_${upper}_TOKEN=$token"
    echo "export MP_${upper}_ORG=$org"
    echo "export MP_${upper}_PROJECT=$project"
    echo "export MP_${upper}_KEY=$key"
  } >>"$work/tenants.env"
}

start_server() {
  local bin port
  bin=$(meterplane_bin "$root")
  ensure_services
  drop_stale_databases mp_litellm
  db_name=mp_litellm_$$
  psql_admin -c "CREATE DATABASE $db_name OWNER $MP_DB_USER" >/dev/null
  port=$(free_port)
  base_url=http://127.0.0.1:$port
  export DATABASE_URL=postgres://$MP_DB_USER:$MP_DB_PASSWORD@$PG_HOST:$PG_PORT/$db_name
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
  export MP_REDIS_PREFIX=$redis_prefix MP_BIND=127.0.0.1:$port MP_WORKERS=2 MP_METRICS_ADDR=127.0.0.1:0
  export MP_JWT_SECRET MP_API_KEY_PEPPER
  MP_JWT_SECRET=$(random_secret)
  MP_API_KEY_PEPPER=$(random_secret)
  export MP_JWT_TTL_SECS=3600 MP_SIGNUP_ENABLED=true MP_DECISION_SAMPLE_EVERY=1
  export MP_LOG_FORMAT=json RUST_LOG=${MP_LITELLM_RUST_LOG:-warn}
  "$bin" migrate
  "$bin" load-prices >/dev/null
  log "serving on $base_url (log: $work/server.log)"
  "$bin" serve >"$work/server.log" 2>&1 &
  server_pid=$!
  wait_http "$base_url/healthz" "$server_pid" "$work/server.log" 30
  make_tenant callback
  make_tenant generic
}

start_proxy() {
  local port
  # shellcheck disable=SC1091
  . "$work/tenants.env"
  port=$(free_port)
  proxy_url=http://127.0.0.1:$port
  master_key=sk-litellm-check-$(random_secret)
  cat >"$work/config.yaml" <<'YAML'
model_list:
  - model_name: chat
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-mock
      mock_response: "Hello from the mock"
  - model_name: cached
    litellm_params:
      model: openai/gpt-4o
      api_key: sk-mock
      mock_response:
        id: chatcmpl-mock-cached
        object: chat.completion
        created: 1700000000
        model: gpt-4o
        choices:
          - index: 0
            finish_reason: stop
            message: {role: assistant, content: "An answer from a warm cache"}
        usage:
          prompt_tokens: 2000
          completion_tokens: 100
          total_tokens: 2100
          prompt_tokens_details: {cached_tokens: 1500}
  - model_name: broken
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-mock
      mock_response: "litellm.InternalServerError"
  - model_name: flaky
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-mock
      mock_response: "litellm.InternalServerError"
      order: 1
  - model_name: flaky
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-mock
      mock_response: "Recovered on the second deployment"
      order: 2
agents:
  - agent_name: planner
    agent_card_params:
      name: planner
      description: Plans trips
      url: http://127.0.0.1:9/
      version: "1.0.0"
      capabilities: {streaming: false}
      defaultInputModes: [text]
      defaultOutputModes: [text]
      skills: []
    litellm_params:
      custom_llm_provider: openai
      model: gpt-4o-mini
      api_key: sk-mock
      mock_response: "plan: step 1"
litellm_settings:
  callbacks: ["meterplane_litellm.callback", "generic_api"]
router_settings:
  num_retries: 2
YAML
  log "LiteLLM proxy on $proxy_url (log: $work/proxy.log)"
  (
    cd "$work"
    # Meterplane's DATABASE_URL and REDIS_URL are not the proxy's: without them it keeps no database.
    # The generic logger drops a router's failed attempt only when the success comes in
    # the same flush (docs/litellm.md); with a 3 s flush, a busy machine split the
    # fallback call's two logs across flushes now and then. 10 s makes that rare.
    exec env -u DATABASE_URL -u REDIS_URL LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_MASTER_KEY="$master_key" \
      METERPLANE_URL="$base_url" METERPLANE_API_KEY="$MP_CALLBACK_KEY" METERPLANE_FLUSH_INTERVAL=0.2 \
      GENERIC_LOGGER_ENDPOINT="$base_url/v1/integrations/litellm/logs" \
      GENERIC_LOGGER_HEADERS="X-Api-Key=$MP_GENERIC_KEY" DEFAULT_FLUSH_INTERVAL_SECONDS=10 \
      "$LITELLM_VENV/bin/litellm" --config "$work/config.yaml" --host 127.0.0.1 --port "$port" --num_workers 1
  ) >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  wait_http "$proxy_url/health/liveliness" "$proxy_pid" "$work/proxy.log" 120
}

e2e() {
  # shellcheck disable=SC1091
  . "$work/tenants.env"
  MP_BASE_URL=$base_url LITELLM_URL=$proxy_url LITELLM_MASTER_KEY=$master_key \
    "$LITELLM_VENV/bin/python" "$root/integrations/litellm/e2e/check.py"
}

log "litellm-check (work directory $work)"
stage tools ensure_litellm
stage unit unit
stage build build
stage server start_server
stage proxy start_proxy
stage e2e e2e
log "litellm-check: passed"
