#!/usr/bin/env bash
# Installs the Debian services the test suite starts on loopback ports (tests start
# their own instances; nothing here is started as a system service).
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
# SNMP: real net-snmp agents (tests/snmpd.py), their CLI clients, and the peer exporter of
# bench/snmp_peer.py; iproute2 for the network namespaces with large interface tables.
[ -x /usr/sbin/snmpd ] || need+=(snmpd)
command -v snmpget >/dev/null 2>&1 && command -v snmpbulkwalk >/dev/null 2>&1 || need+=(snmp)
command -v prometheus-snmp-exporter >/dev/null 2>&1 || need+=(prometheus-snmp-exporter)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The time-series sink's tests and bench/sink.py write to a VictoriaMetrics of their own
# (InfluxDB line protocol in, export API out); the dashboards' queries run against it too.
command -v victoria-metrics >/dev/null 2>&1 || [ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
# Alerting: a real Prometheus Alertmanager that the alertmanager receiver's tests push to.
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# Headless Chromium for the test of the department's page (tests/e2e/test_page.py).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# PostgreSQL: the store's second backend; tests run initdb + postgres themselves (as the
# `postgres` user the package creates), and `netqos backup/restore` use pg_dump, pg_restore, psql.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1 \
    || need+=(postgresql-client)
# The compose file's test validates it with `docker-compose config` (the v1 client: it needs no
# engine); the systemd units' test runs `systemd-analyze verify`.
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-system-deps: need root (or sudo) to apt-get install: ${need[*]}" >&2
        exit 1
    fi
fi
echo "install-system-deps: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# snmpd, prometheus-snmp-exporter, victoria-metrics, prometheus-alertmanager and postgresql
# would start system services on install (port 161/199, :9116, :8428, :9093, :5432 on every
# address); where no policy-rc.d says otherwise, forbid that for this install.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
