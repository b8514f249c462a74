#!/bin/sh
# Installs pvectl into its own venv (~/.local/share/pvectl/venv) and links the command
# into ~/.local/bin. As root on Debian it first installs python3-venv if it is missing.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
DATA="${XDG_DATA_HOME:-$HOME/.local/share}/pvectl"
[ -x "$DATA/venv/bin/python" ] || python3 -m venv "$DATA/venv"
"$DATA/venv/bin/pip" install -q .
mkdir -p "$HOME/.local/bin"
ln -sf "$DATA/venv/bin/pvectl" "$HOME/.local/bin/pvectl"
echo "pvectl installed: $HOME/.local/bin/pvectl"
