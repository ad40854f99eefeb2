#!/usr/bin/env bash
# Install what HOPE needs, idempotently: Debian packages (Orthanc and its plugins, Chromium for the browser
# tests) and a virtual environment at .venv/ with the exact package set of requirements.lock.
#
#   HOPE_SKIP_APT=1     do not touch system packages (they must already be there)
#   HOPE_WITH_BROWSER=0 skip Chromium (only the browser tests need it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# orthanc-postgresql and postgresql: the optional PostgreSQL index, and the server its test starts in a temporary
# folder on a free port (Debian's own cluster on 5432, if its post-install starts one, is left alone and unused).
# nginx: the TLS reverse proxy (configs/nginx) and its test (bookworm's nginx-light is only nginx plus an echo module).
APT_PACKAGES=(orthanc orthanc-dicomweb orthanc-gdcm orthanc-python orthanc-postgresql postgresql nginx python3-venv)
if [[ "${HOPE_WITH_BROWSER:-1}" == 1 ]]; then APT_PACKAGES+=(chromium); fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ "${HOPE_SKIP_APT:-0}" == 1 ]]; then
    echo "missing Debian packages: ${missing[*]} (HOPE_SKIP_APT=1 forbids installing them)" >&2; exit 1
  fi
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a system-wide Orthanc on 8042/4242 when it installs the package; HOPE runs its own.
if systemctl is-active --quiet orthanc 2>/dev/null; then
  log "stopping the Debian orthanc service (HOPE starts its own Orthanc)"
  systemctl stop orthanc && systemctl disable orthanc >/dev/null 2>&1 || true
fi
# Debian also starts nginx with its default site on port 80 when it installs it. Stopped only right after this run
# installed it: a later run must not stop an nginx serving configs/nginx/hope.conf (README "TLS with nginx").
if [[ " ${missing[*]-} " == *" nginx "* ]] && systemctl is-active --quiet nginx 2>/dev/null; then
  log "stopping the Debian nginx service started by its installation (enable configs/nginx/hope.conf to use it)"
  systemctl stop nginx && systemctl disable nginx >/dev/null 2>&1 || true
fi

# The local OpenID Connect provider of the tests and the demo (oidc-provider/provider.mjs, Node): its locked npm
# packages, installed again whenever package-lock.json is newer than node_modules/.
if [[ ! -d oidc-provider/node_modules || oidc-provider/package-lock.json -nt oidc-provider/node_modules ]]; then
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "node and npm are needed for oidc-provider/ (HOPE's local OpenID Connect provider): install Node.js 20 or" \
      "later with npm (Debian: apt-get install nodejs npm), then run scripts/setup.sh again" >&2
    exit 1
  fi
  log "installing oidc-provider/ npm packages (package-lock.json)"
  (cd oidc-provider && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
  touch oidc-provider/node_modules
fi

# axe-core for the console's accessibility test (tools/axe/): locked, installed again when its lock is newer.
if [[ ! -d tools/axe/node_modules || tools/axe/package-lock.json -nt tools/axe/node_modules ]]; then
  log "installing tools/axe/ npm packages (package-lock.json)"
  (cd tools/axe && npm ci --no-audit --no-fund --loglevel=error)
  touch tools/axe/node_modules
fi

PY=${PYTHON:-python3}
STAMP=.venv/.hope-installed
WANT=$(cat requirements.lock pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && $(cat $STAMP) == "$WANT" ]]; then
  log "virtual environment .venv is up to date"
  exit 0
fi
[[ -x .venv/bin/python ]] || { log "creating .venv"; $PY -m venv .venv; }
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first, and the right build: CUDA where a GPU is present, CPU otherwise (never several GB of CUDA
# wheels on a CPU machine). Elsewhere than this project's machines, a CPU build may need
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
TORCH_VERSION=2.13.0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then TORCH="torch==$TORCH_VERSION"
else TORCH="torch==$TORCH_VERSION+cpu"; fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__ != '${TORCH#torch==}')" 2>/dev/null; then
  log "installing $TORCH"
  "${PIP[@]}" install "$TORCH"
fi
log "installing the locked package set (requirements.lock)"
"${PIP[@]}" install --no-deps -r requirements.lock
"${PIP[@]}" install --no-deps --no-build-isolation -e .
# monailabel's launcher script runs whatever `python` is first on PATH; pin it to this environment's Python.
cat > .venv/bin/monailabel <<'SH'
#!/usr/bin/env bash
exec "$(dirname "$(readlink -f "$0")")/python" -m monailabel.main "$@"
SH
chmod +x .venv/bin/monailabel
.venv/bin/python -c "import hope, monailabel, torch; print('hope', hope.__version__, '| monailabel', monailabel.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
echo "$WANT" > $STAMP
