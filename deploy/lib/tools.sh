# Sourced by deploy/sdk-check.sh: installs the external tools that check the OpenAPI
# document from the outside (validator, linter, client generators, compiler, fuzzer)
# at the exact versions pinned in tests/sdk/tools/, into a cache OUTSIDE the clone:
#
#   $MP_TOOLS_CACHE/venv          Python virtualenv (requirements.txt + constraints.txt)
#   $MP_TOOLS_CACHE/npm           npm prefix (package.json + package-lock.json, `npm ci`)
#   $MP_TOOLS_CACHE/stamp         what is installed: interpreter versions, pins, their hash
#
# A cache whose stamp matches the pins (and the machine's python3 and node) is reused
# as it is; anything else is reinstalled from PyPI and the npm registry only. Needs
# python3 (3.11 or later) with venv, node (20.19 or later) and npm.

MP_TOOLS_CACHE=${MP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meterplane-tools}
MP_TOOLS_PINS=${MP_TOOLS_PINS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/sdk/tools" && pwd)}
MP_PYTHON=${MP_PYTHON:-python3}

# Quiet, offline-friendly defaults for the tools themselves.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! declare -F log >/dev/null; then
  log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
fi

tools_die() {
  echo "tools: $*" >&2
  return 1
}

# The stamp a cache must carry to be reused: readable, and exact.
tools_wanted_stamp() {
  local py node
  py=$("$MP_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  node=$(node --version)
  echo "python $py"
  echo "node $node"
  grep -v -e '^#' -e '^$' "$MP_TOOLS_PINS/requirements.txt"
  (cd "$MP_TOOLS_PINS" && node -e 'const p=require("./package.json");
    for (const [n, v] of Object.entries(p.dependencies)) console.log(n + "@" + v)')
  echo "sha256 $(cd "$MP_TOOLS_PINS" && cat requirements.txt constraints.txt package.json package-lock.json \
    | sha256sum | cut -d' ' -f1)"
}

tools_check_prerequisites() {
  command -v "$MP_PYTHON" >/dev/null || tools_die "$MP_PYTHON not found (Python 3.11+ with venv is needed)"
  "$MP_PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || tools_die "$MP_PYTHON must be Python 3.11+ with the venv and ensurepip modules"
  command -v node >/dev/null || tools_die "node not found (Node.js 20.19+ and npm are needed)"
  command -v npm >/dev/null || tools_die "npm not found"
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
    || tools_die "Node.js $(node --version) is too old: @redocly/cli needs 20.19 or later"
}

tools_install() {
  local cache=$MP_TOOLS_CACHE
  mkdir -p "$cache"
  rm -f "$cache/stamp"

  log "tools: creating the Python virtualenv in $cache/venv"
  rm -rf "$cache/venv"
  "$MP_PYTHON" -m venv "$cache/venv"
  "$cache/venv/bin/python" -m pip install --quiet --no-input \
    -r "$MP_TOOLS_PINS/requirements.txt" -c "$MP_TOOLS_PINS/constraints.txt"

  log "tools: installing the npm tools in $cache/npm"
  rm -rf "$cache/npm"
  mkdir -p "$cache/npm"
  cp "$MP_TOOLS_PINS/package.json" "$MP_TOOLS_PINS/package-lock.json" "$cache/npm/"
  (cd "$cache/npm" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

  tools_wanted_stamp >"$cache/stamp"
}

# Makes the pinned tools available: sets TOOLS_VENV, TOOLS_NODE_MODULES, and puts
# both tool directories first on PATH.
ensure_tools() {
  tools_check_prerequisites || return 1
  local cache=$MP_TOOLS_CACHE wanted
  wanted=$(tools_wanted_stamp)
  if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$wanted" ] \
    && "$cache/venv/bin/python" -c 'import openapi_spec_validator, openapi_python_client, schemathesis' 2>/dev/null \
    && [ -x "$cache/npm/node_modules/.bin/redocly" ] && [ -x "$cache/npm/node_modules/.bin/tsc" ]; then
    log "tools: reusing $cache (pins unchanged)"
  else
    log "tools: installing the pinned versions (cache missing or out of date)"
    tools_install || return 1
  fi
  TOOLS_VENV=$cache/venv
  TOOLS_NODE_MODULES=$cache/npm/node_modules
  export PATH="$TOOLS_VENV/bin:$TOOLS_NODE_MODULES/.bin:$PATH"
  log "tools: $(grep -v -e '^sha256' "$cache/stamp" | tr '\n' ' ')"
}

# For whoever bumps a pin in requirements.txt or package.json: resolves the new set in
# a scratch directory and rewrites constraints.txt and package-lock.json.
tools_relock() {
  tools_check_prerequisites || return 1
  local scratch
  scratch=$(mktemp -d)
  "$MP_PYTHON" -m venv "$scratch/venv"
  "$scratch/venv/bin/python" -m pip install --quiet -r "$MP_TOOLS_PINS/requirements.txt"
  {
    echo "# Every package of the tools virtualenv, as resolved by tools_relock (deploy/lib/tools.sh)."
    "$scratch/venv/bin/python" -m pip freeze --all | grep -v -i -e '^pip==' | LC_ALL=C sort -f
  } >"$MP_TOOLS_PINS/constraints.txt"
  cp "$MP_TOOLS_PINS/package.json" "$scratch/"
  (cd "$scratch" && npm install --package-lock-only --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$scratch/package-lock.json" "$MP_TOOLS_PINS/package-lock.json"
  rm -rf "$scratch"
  log "tools: relocked $MP_TOOLS_PINS/constraints.txt and package-lock.json"
}
