#!/usr/bin/env bash
# Bring the compose topology up (docs/deployment.md): secrets, etcd and the
# controllers, a node token, the nodes and schedulers, then a demo account
# and domain, and wait until an edge of every region serves the domain.
# Run `make images` first (`make compose-up` does both).
#
# Environment: COMPOSE (default: `docker compose` if present, else
# docker-compose), OUTPOSTCTL (default bin/linux-amd64/outpostctl), and the
# published ports OUTPOST_CONTROLLER_PORT (7000), OUTPOST_DNS_PORT (7053),
# OUTPOST_{EU,US,AP}_HTTP_PORT (8081-8083), OUTPOST_{EU,US,AP}_HTTPS_PORT
# (8441-8443).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
compose() { $COMPOSE -p outpost -f "$here/docker-compose.yml" "$@"; }
ctl=${OUTPOSTCTL:-$root/bin/linux-amd64/outpostctl}
export OUTPOST_CONTROLLER=127.0.0.1:${OUTPOST_CONTROLLER_PORT:-7000}
DOMAIN=www.demo.test
CNAME=$DOMAIN.cdn.outpost.test

./init.sh
operator=$(cat .state/bootstrap.token)
op() { OUTPOST_TOKEN=$operator "$ctl" "$@"; }

echo "== etcd, controllers, origin"
compose up -d etcd-1 etcd-2 etcd-3 controller-1 controller-2 origin

echo "== waiting for the controller on $OUTPOST_CONTROLLER"
for i in $(seq 1 90); do
  if op whoami >/dev/null 2>&1; then break; fi
  [ "$i" = 90 ] && { echo "controller not ready after 90 s"; compose logs --tail 30 controller-1; exit 1; }
  sleep 1
done
op whoami

if ! grep -q '^OUTPOST_NODE_TOKEN=.' .state/node.env; then
  echo "== node token for the edge nodes and schedulers"
  secret=$(op token create --role node --description "compose edge nodes and schedulers" -o json | jq -r .secret)
  (umask 077 && printf 'OUTPOST_NODE_TOKEN=%s\n' "$secret" > .state/node.env)
fi

echo "== edge nodes and schedulers"
compose up -d

if [ ! -s .state/admin.token ]; then
  echo "== demo account and its admin token"
  op account get demo >/dev/null 2>&1 || op account create demo --display-name "Demo account"
  secret=$(op token create --account demo --role admin --description "compose demo admin" -o json | jq -r .secret)
  (umask 077 && printf '%s\n' "$secret" > .state/admin.token)
fi
admin=$(cat .state/admin.token)
if ! OUTPOST_TOKEN=$admin "$ctl" domain get "$DOMAIN" >/dev/null 2>&1; then
  echo "== demo domain $DOMAIN, origin the origin container (10.88.0.40:80)"
  OUTPOST_TOKEN=$admin "$ctl" domain add "$DOMAIN" --origin ip:10.88.0.40
fi

if [ ! -s .state/demo.crt ]; then
  echo "== HTTPS for $DOMAIN with a self-signed certificate (.state/demo.crt); the origin speaks plain HTTP"
  OUTPOST_TOKEN=$admin "$ctl" origin protocol "$DOMAIN" --policy http >/dev/null
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
    -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN" \
    -keyout .state/demo.key -out .state/demo.crt 2>/dev/null)
  id=$(OUTPOST_TOKEN=$admin "$ctl" cert upload --cert .state/demo.crt --key .state/demo.key)
  OUTPOST_TOKEN=$admin "$ctl" https enable "$DOMAIN" --cert-id "$id" >/dev/null
fi

echo "== waiting for the six edge nodes to connect"
for i in $(seq 1 90); do
  n=$(op node list -o json | jq '[.nodes[]? | select(.health == "NODE_HEALTH_CONNECTED")] | length' 2>/dev/null || echo 0)
  [ "$n" -ge 6 ] && break
  [ "$i" = 90 ] && { echo "only $n nodes connected after 90 s"; op node list; exit 1; }
  sleep 1
done
op node list

echo "== waiting for an edge of every region to serve $DOMAIN"
for port in ${OUTPOST_EU_HTTP_PORT:-8081} ${OUTPOST_US_HTTP_PORT:-8082} ${OUTPOST_AP_HTTP_PORT:-8083}; do
  for i in $(seq 1 60); do
    if curl -fsS -o /dev/null -H "Host: $DOMAIN" "http://127.0.0.1:$port/"; then break; fi
    [ "$i" = 60 ] && { echo "127.0.0.1:$port does not serve $DOMAIN"; exit 1; }
    sleep 1
  done
  echo "127.0.0.1:$port serves $DOMAIN"
done
for port in ${OUTPOST_EU_HTTPS_PORT:-8441} ${OUTPOST_US_HTTPS_PORT:-8442} ${OUTPOST_AP_HTTPS_PORT:-8443}; do
  for i in $(seq 1 60); do
    if curl -fsS -o /dev/null --cacert .state/demo.crt --resolve "$DOMAIN:$port:127.0.0.1" "https://$DOMAIN:$port/"; then break; fi
    [ "$i" = 60 ] && { echo "127.0.0.1:$port does not serve $DOMAIN over HTTPS"; exit 1; }
    sleep 1
  done
  echo "127.0.0.1:$port serves $DOMAIN over HTTPS"
done

cat <<MSG

Outpost is up (compose project "outpost"). Try:

  export OUTPOST_CONTROLLER=$OUTPOST_CONTROLLER
  export OUTPOST_TOKEN=\$(cat $here/.state/admin.token)   # demo account admin
  $ctl domain list
  curl -si -H 'Host: $DOMAIN' http://127.0.0.1:${OUTPOST_EU_HTTP_PORT:-8081}/   # edge-eu-1
  curl -s --cacert $here/.state/demo.crt --resolve $DOMAIN:${OUTPOST_US_HTTPS_PORT:-8442}:127.0.0.1 https://$DOMAIN:${OUTPOST_US_HTTPS_PORT:-8442}/   # edge-us-1
  dig @127.0.0.1 -p ${OUTPOST_DNS_PORT:-7053} $CNAME A +subnet=198.51.100.0/24   # us nodes first

The operator (bootstrap) token is in $here/.state/bootstrap.token.
Tear it down with: make compose-down
MSG
