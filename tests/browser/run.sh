#!/usr/bin/env bash
# The real-browser check of the OAuth web flow: installs Debian's chromium
# and chromium-driver when they are missing (needs root, as on CI), builds
# spout and the example app, and runs run.py. Screenshots: tests/browser/out/.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "installing chromium and chromium-driver (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
fi
cargo build -q --bin spout --example oauth_app
python3 tests/browser/run.py
