#!/usr/bin/env bash
# Command 1 of the README: install/start PostgreSQL and Redis if needed, build,
# migrate, load the price catalog, create an operator and a demo tenant with sample
# usage, then serve.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib/services.sh

ensure_services
log "building meterplane (release)"
cargo build --release --locked --bin meterplane
bin=target/release/meterplane

log "migrating"
"$bin" migrate
log "loading the price catalog"
"$bin" load-prices
OPERATOR_EMAIL=operator@meterplane.local
OPERATOR_PASSWORD=${MP_OPERATOR_PASSWORD:-meterplane-operator}
MP_OPERATOR_PASSWORD=$OPERATOR_PASSWORD "$bin" create-operator --email "$OPERATOR_EMAIL"
log "creating demo data"
demo=$("$bin" demo)
echo "$demo"
key=$(echo "$demo" | awk '/^api key:/ {print $3}')
org=$(echo "$demo" | awk '/^organization:/ {print $2}')
bind=${MP_BIND:-127.0.0.1:8080}

cat <<TXT

Meterplane is starting on http://$bind   (Ctrl-C stops it)
  Dashboard:      http://$bind/ui/   (demo@meterplane.local / meterplane-demo)
  API reference:  http://$bind/docs/
  OpenAPI:        http://$bind/openapi.json
  Operator:       $OPERATOR_EMAIL / $OPERATOR_PASSWORD

Try it:
  TOKEN=\$(curl -s -X POST http://$bind/v1/auth/login -H 'content-type: application/json' \\
      -d '{"email":"demo@meterplane.local","password":"meterplane-demo"}' | sed -E 's/.*"accessToken":"([^"]+)".*/\1/')
  curl -s http://$bind/v1/me -H "authorization: Bearer \$TOKEN"
  curl -s http://$bind/v1/gateway/whoami -H "x-api-key: $key"
  curl -s -X POST http://$bind/v1/usage -H "x-api-key: $key" -H 'content-type: application/json' \\
      -d '{"requestId":"try-1","endpoint":"/chat/completions","provider":"openai","model":"gpt-4o","user":"me","promptTokens":1200,"completionTokens":300}'
  curl -s "http://$bind/v1/orgs/$org/spend-logs?limit=5" -H "authorization: Bearer \$TOKEN"

TXT
exec "$bin" serve
