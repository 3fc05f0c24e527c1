#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: Debian packages
# (nginx as a real origin, openssl, wrk for make bench; iptables for the fault tests where Docker
# is installed) and the Go modules. Idempotent and quiet when everything is
# there already.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# wrk is the client of the cache-hit benchmarks (make bench).
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# The fault tests (make test-e2e, where Docker works) cut networks with
# iptables run in containers' network namespaces (nsenter, from util-linux).
if command -v docker >/dev/null 2>&1; then
  command -v iptables >/dev/null 2>&1 || need+=(iptables)
  command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
go mod download
