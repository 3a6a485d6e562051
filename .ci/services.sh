#!/usr/bin/env bash
# Start the local services the integration tests use, where they are installed and
# not already running. On a machine without them, the tests fall back to
# testcontainers (which needs a Docker engine).
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  version=$(ls /etc/postgresql 2>/dev/null | head -1)
  [ -n "$version" ] && pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
if ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/flowrecord-redis.log || true
fi
for i in $(seq 1 30); do
  port_open 5432 && break
  sleep 1
done
port_open 5432 && echo "services: postgresql up" || echo "services: no postgresql on 127.0.0.1:5432"
port_open 6379 && echo "services: redis up" || echo "services: no redis on 127.0.0.1:6379"
exit 0
