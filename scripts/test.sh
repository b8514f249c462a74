#!/bin/sh
# Installs everything the tests need (Debian packages when root, a venv with the Python
# packages) and runs lint, types, the docs staleness check and the whole test suite.
set -eu
cd "$(dirname "$0")/.."
DEB_PACKAGES="python3-venv corosync corosync-qnetd corosync-qdevice openssh-server openssh-client fuse3 libfuse3-3 fio ioping nftables iproute2 postgresql-15 sqlite3 procps psmisc zsh fish strace prometheus tmux"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    for pkg in $DEB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
    # The packages start daemons we do not want: tests start their own.
    for svc in corosync corosync-qnetd corosync-qdevice pacemaker postgresql prometheus; do
        systemctl stop "$svc" 2>/dev/null || true
    done
fi
VENV="${PVECTL_TEST_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/pip" install -q -e '.[test]'
"$VENV/bin/ruff" check pvectl tests benchmarks
"$VENV/bin/ruff" format --check pvectl tests benchmarks
"$VENV/bin/mypy"
# Layers point down (pyproject.toml [tool.importlinter], docs/architecture.md).
"$VENV/bin/lint-imports"
# Most tests wait on real daemons and timers, not on the CPU: three workers (whole files
# per worker) keep the run well under CI's 20 minutes on 2 cores.
"$VENV/bin/python" -m pytest -q -ra -n "${PVECTL_TEST_WORKERS:-3}" --dist loadfile "$@"
