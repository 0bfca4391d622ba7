#!/usr/bin/env bash
# Install what the local stack and the tests need: a virtualenv with every
# service in editable mode, the generated gRPC stubs, and Debian's nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=.venv

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "nginx is missing; install Debian's package as root: apt-get install nginx-light" >&2
    exit 1
  fi
  echo "Installing nginx from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi

"$VENV/bin/pip" install --quiet --disable-pip-version-check grpcio-tools
make --no-print-directory proto

"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  -e libs/common \
  -e services/auth \
  -e services/keys \
  -e services/providers \
  -e services/generation \
  -e simulator \
  -r tests/requirements.txt
