# Shared by deploy/setup.sh and deploy/test.sh: make sure PostgreSQL and Redis run
# on this machine, and that the application's role and database exist.
# Works on a machine with trust auth (CI) and on a fresh Debian/Ubuntu install
# (peer auth on the socket, scram on TCP), where it installs what is missing.

MP_DB_USER=${MP_DB_USER:-meterplane}
MP_DB_PASSWORD=${MP_DB_PASSWORD:-meterplane}
MP_DB_NAME=${MP_DB_NAME:-meterplane}
PG_HOST=127.0.0.1
PG_PORT=5432

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  log "installing $* from the distribution's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then install_packages postgresql; fi
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
  for _ in $(seq 1 60); do
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && return
    sleep 0.5
  done
  echo "PostgreSQL did not become ready on $PG_HOST:$PG_PORT" >&2
  exit 1
}

start_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  if ! command -v redis-server >/dev/null; then install_packages redis-server; fi
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 40); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return
    sleep 0.25
  done
  echo "Redis did not become ready on 127.0.0.1:6379" >&2
  exit 1
}

# Runs SQL as the PostgreSQL superuser: over TCP where trust auth allows it,
# otherwise as the postgres OS user over the socket (peer auth).
psql_admin() {
  if psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 </dev/null; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
  elif [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- psql -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
  else
    sudo -u postgres psql -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
  fi
}

ensure_role_and_database() {
  psql_admin -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$MP_DB_USER') THEN
        CREATE ROLE $MP_DB_USER LOGIN CREATEDB PASSWORD '$MP_DB_PASSWORD';
      END IF;
    END \$\$;"
  if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$MP_DB_NAME'")" ]; then
    log "creating database $MP_DB_NAME"
    psql_admin -c "CREATE DATABASE $MP_DB_NAME OWNER $MP_DB_USER"
  fi
}

ensure_services() {
  start_postgres
  start_redis
  ensure_role_and_database
  export DATABASE_URL=${DATABASE_URL:-postgres://$MP_DB_USER:$MP_DB_PASSWORD@$PG_HOST:$PG_PORT/$MP_DB_NAME}
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
}

# The meterplane binary the outside checks (sdk-check, litellm-check) run. A release
# build by default; MP_CHECK_PROFILE=debug takes the debug build instead, which
# deploy/test.sh has just built for the integration tests, so a full run does not
# compile the whole program a second time (about nine minutes from cold on two cores).
check_profile() {
  case "${MP_CHECK_PROFILE:-release}" in
    release | debug) printf '%s' "${MP_CHECK_PROFILE:-release}" ;;
    *) log "MP_CHECK_PROFILE must be release or debug, not ${MP_CHECK_PROFILE}"; return 1 ;;
  esac
}

build_meterplane() {
  local profile
  profile=$(check_profile) || return 1
  # deploy/test.sh has just built the debug binary with the suite. `cargo build --bin`
  # would build it again: without the dev-dependencies, several crates get other
  # features, which recompiles a third of the tree (about four minutes on two cores).
  if [ "$profile" = debug ] && [ "${MP_CHECK_BINARY_BUILT:-0}" = 1 ] && [ -x target/debug/meterplane ]; then
    log "reusing target/debug/meterplane, built with the suite"
    return 0
  fi
  if [ "$profile" = release ]; then
    cargo build --release --locked --bin meterplane
  else
    cargo build --locked --bin meterplane
  fi
}

meterplane_bin() {
  printf '%s/target/%s/meterplane' "$1" "$(check_profile)"
}
