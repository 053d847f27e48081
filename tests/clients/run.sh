#!/usr/bin/env bash
# Runs the real PyPI client pnutpy 0.5.4 against spout (tests/clients/pnutpy_check.py).
# Makes a virtualenv in target/clients-venv (or $CLIENTS_VENV) with pnutpy==0.5.4 and
# websocket-client, then runs the check against $SPOUT_BIN (default target/debug/spout,
# which this script does not build). Exit status: 0 all work, 1 some method fails, 2 setup.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${CLIENTS_VENV:-target/clients-venv}"
export SPOUT_BIN="${SPOUT_BIN:-target/debug/spout}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("pnutpy") != "0.5.4")' 2>/dev/null \
    || ! "$VENV/bin/python" -c 'import websocket' 2>/dev/null; then
    timeout 300 "$VENV/bin/pip" install -q --disable-pip-version-check 'pnutpy==0.5.4' websocket-client
fi
exec timeout 300 "$VENV/bin/python" tests/clients/pnutpy_check.py
