# Sourced by deploy/ui-check.sh: Chromium and its WebDriver from the distribution's
# packages (installed when missing), and Selenium at the version pinned in
# tests/ui/ in a virtualenv OUTSIDE the clone, beside the other checks' tools:
#
#   $MP_TOOLS_CACHE/ui-venv     requirements.txt + constraints.txt
#   $MP_TOOLS_CACHE/ui-stamp    interpreter version, pins, their hash
#
#   $MP_TOOLS_CACHE/axe-core-<version>/axe.min.js
#                               the accessibility engine (tests/ui/axe-version), from
#                               the npm registry; injected by the check, never served
#
# A venv whose stamp matches is reused as it is; anything else is reinstalled from PyPI.
# Selenium is told where the browser and the driver are, so it never downloads either.

MP_TOOLS_CACHE=${MP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meterplane-tools}
MP_UI_PINS=${MP_UI_PINS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/ui" && pwd)}
MP_PYTHON=${MP_PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

ensure_chromium() {
  MP_CHROMIUM=${MP_CHROMIUM:-$(command -v chromium || true)}
  MP_CHROMEDRIVER=${MP_CHROMEDRIVER:-$(command -v chromedriver || true)}
  if [ -z "$MP_CHROMIUM" ] || [ -z "$MP_CHROMEDRIVER" ]; then
    install_packages chromium chromium-driver
    MP_CHROMIUM=$(command -v chromium)
    MP_CHROMEDRIVER=$(command -v chromedriver)
  fi
  export MP_CHROMIUM MP_CHROMEDRIVER
  log "browser: $("$MP_CHROMIUM" --version 2>/dev/null | head -n 1); $("$MP_CHROMEDRIVER" --version | cut -d' ' -f1-2)"
}

ui_wanted_stamp() {
  echo "python $("$MP_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  grep -v -e '^#' -e '^$' "$MP_UI_PINS/requirements.txt"
  echo "sha256 $(cat "$MP_UI_PINS/requirements.txt" "$MP_UI_PINS/constraints.txt" | sha256sum | cut -d' ' -f1)"
}

# Sets UI_VENV; installs the pinned set when the cache is missing or stale.
ensure_selenium() {
  local venv=$MP_TOOLS_CACHE/ui-venv stamp=$MP_TOOLS_CACHE/ui-stamp wanted
  wanted=$(ui_wanted_stamp)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
    log "browser: reusing $venv (pins unchanged)"
  else
    log "browser: installing the pinned Selenium into $venv (cache missing or out of date)"
    mkdir -p "$MP_TOOLS_CACHE"
    rm -f "$stamp"
    rm -rf "$venv"
    "$MP_PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --no-input \
      -r "$MP_UI_PINS/requirements.txt" -c "$MP_UI_PINS/constraints.txt" || return 1
    echo "$wanted" >"$stamp"
  fi
  UI_VENV=$venv
}

# Sets MP_AXE_JS; fetches the pinned axe-core from the npm registry (npm pack, checked
# against the registry's integrity) when the cached copy is missing.
ensure_axe() {
  local version dir work
  version=$(grep -v -e '^#' -e '^$' "$MP_UI_PINS/axe-version")
  dir=$MP_TOOLS_CACHE/axe-core-$version
  if [ -s "$dir/axe.min.js" ]; then
    log "browser: reusing axe-core $version ($dir)"
  else
    log "browser: fetching axe-core@$version from the npm registry into $dir"
    command -v npm >/dev/null || install_packages npm
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent "axe-core@$version" >/dev/null && tar xzf "axe-core-$version.tgz") || { rm -rf "$work"; return 1; }
    mkdir -p "$dir"
    cp "$work/package/axe.min.js" "$work/package/LICENSE" "$dir/"
    rm -rf "$work"
  fi
  MP_AXE_JS=$dir/axe.min.js
  export MP_AXE_JS
}
