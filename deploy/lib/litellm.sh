# Sourced by deploy/litellm-check.sh: installs the LiteLLM proxy, the A2A SDK and the
# OpenAI client at the versions pinned in integrations/litellm/tools/ into a virtualenv
# OUTSIDE the clone, beside the SDK check's tools but apart from them (LiteLLM pins its
# own versions of packages those tools use):
#
#   $MP_TOOLS_CACHE/litellm-venv    requirements.txt + constraints.txt
#   $MP_TOOLS_CACHE/litellm-stamp   interpreter version, pins, their hash
#
# A venv whose stamp matches is reused as it is; anything else is reinstalled from PyPI.
# Needs python3 (3.11 or later) with venv. Then the integration package of this clone
# is installed into it (no network: --no-deps --no-build-isolation).

MP_TOOLS_CACHE=${MP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meterplane-tools}
MP_LITELLM_PINS=${MP_LITELLM_PINS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../integrations/litellm/tools" && pwd)}
MP_PYTHON=${MP_PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! declare -F log >/dev/null; then
  log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
fi

litellm_wanted_stamp() {
  echo "python $("$MP_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  grep -v -e '^#' -e '^$' "$MP_LITELLM_PINS/requirements.txt"
  echo "sha256 $(cat "$MP_LITELLM_PINS/requirements.txt" "$MP_LITELLM_PINS/constraints.txt" | sha256sum | cut -d' ' -f1)"
}

# Sets LITELLM_VENV; installs the pinned set when the cache is missing or stale.
ensure_litellm() {
  "$MP_PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    echo "litellm: $MP_PYTHON must be Python 3.11+ with venv and ensurepip" >&2
    return 1
  }
  local venv=$MP_TOOLS_CACHE/litellm-venv stamp=$MP_TOOLS_CACHE/litellm-stamp wanted
  wanted=$(litellm_wanted_stamp)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
    && "$venv/bin/python" -c 'import litellm, a2a, openai' 2>/dev/null; then
    log "litellm: reusing $venv (pins unchanged)"
  else
    log "litellm: installing the pinned LiteLLM proxy into $venv (cache missing or out of date)"
    mkdir -p "$MP_TOOLS_CACHE"
    rm -f "$stamp"
    rm -rf "$venv"
    "$MP_PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --no-input \
      -r "$MP_LITELLM_PINS/requirements.txt" -c "$MP_LITELLM_PINS/constraints.txt" || return 1
    echo "$wanted" >"$stamp"
  fi
  LITELLM_VENV=$venv
  "$venv/bin/python" -m pip install --quiet --no-input --no-deps --no-build-isolation --force-reinstall \
    "$MP_LITELLM_PINS/.." >/dev/null || return 1
  log "litellm: $("$venv/bin/python" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("litellm", "a2a-sdk", "openai", "meterplane-litellm")))')"
}
