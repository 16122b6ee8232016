#!/usr/bin/env bash
# Make sure the services the tests talk to are up on loopback: PostgreSQL (trust auth for
# 127.0.0.1, database `test`) and Redis. Installs them from Debian's packages when absent
# (needs root). Safe to run again: it only acts on what is missing.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "services: need root to run: $*" >&2; return 1; fi; }

# Another apt run may hold its locks (a boot-time upgrade, a set-up script): wait for it
# rather than fail. `install` waits on dpkg's lock itself (DPkg::Lock::Timeout, apt >= 1.9.11);
# `update` does not wait on the lists' lock, so it is tried again, for up to 10 minutes.
apt_get() { as_root apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt_update() {
  local output
  for _ in $(seq 1 120); do
    if output=$(apt_get update -qq 2>&1); then return 0; fi
    case "$output" in *"Could not get lock"*) sleep 5 ;; *) echo "$output" >&2; return 1 ;; esac
  done
  echo "$output" >&2
  return 1
}
apt_updated=0
apt_install() {
  if [ $apt_updated = 0 ]; then apt_update; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing PostgreSQL"
    apt_install postgresql postgresql-client
    local conf; conf=$(ls -d /etc/postgresql/*/main | head -n1)
    # Tests connect over loopback without a password, as on the project's machines.
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$conf/pg_hba.conf"
  fi
  echo "services: starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
  fi
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
  command -v redis-server >/dev/null || { echo "services: installing Redis"; apt_install redis-server; }
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.5; done
}

ensure_tools() {
  # promtool (Debian's prometheus package) checks our /metrics output in the tests.
  command -v promtool >/dev/null || { echo "services: installing promtool"; apt_install prometheus; }
  # Alertmanager receives the alerts the tests raise (its v2 API).
  command -v prometheus-alertmanager >/dev/null || {
    echo "services: installing Alertmanager"; apt_install prometheus-alertmanager; }
}

ensure_postgres
ensure_redis
ensure_tools
