# Sourced by the outside checks (sdk-check.sh, litellm-check.sh, ui-check.sh): the
# small helpers each of them needs to run a server of its own on loopback.

# Stops a process this script started: TERM, up to 5 s, then KILL.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

random_secret() {
  python3 -c 'import secrets; print(secrets.token_urlsafe(48))'
}

wait_http() { # wait_http URL PID LOG SECONDS
  local url=$1 pid=$2 logf=$3 seconds=$4
  for _ in $(seq 1 $((seconds * 5))); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "exited during start-up:" >&2
      tail -n 30 "$logf" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "$url did not answer within ${seconds}s" >&2
  return 1
}

# Databases named PREFIX_PID of earlier runs whose process is gone (killed before its
# clean-up could drop them).
drop_stale_databases() { # drop_stale_databases PREFIX
  local prefix=$1 db pid
  for db in $(psql_admin -c "SELECT datname FROM pg_database WHERE datname ~ '^${prefix}_[0-9]+$'"); do
    pid=${db#"${prefix}"_}
    if ! kill -0 "$pid" 2>/dev/null; then
      psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    fi
  done
}
