#!/usr/bin/env bash
# Bring the compose topology up (docs/deployment.md): secrets, etcd and the
# controllers, the cluster CA certificate, a join token for each edge node and
# scheduler that has no certificate yet, the nodes and schedulers, then a demo
# account and domain, and wait until an edge of every region serves the domain.
# Run `make images` first (`make compose-up` does both).
#
# Environment: COMPOSE (default: `docker compose` if present, else
# docker-compose), OUTPOSTCTL (default bin/linux-amd64/outpostctl), and the
# published ports OUTPOST_CONTROLLER_PORT (7000), OUTPOST_DNS_PORT (7053),
# OUTPOST_SCHEDULER_GRPC_PORT (7100), OUTPOST_{EU,US,AP}_HTTP_PORT
# (8081-8083), OUTPOST_{EU,US,AP}_HTTPS_PORT (8441-8443). A second copy
# beside the first (the fault tests run one) also sets COMPOSE_PROJECT_NAME
# (outpost), TAG (the images' tag, latest), OUTPOST_NET_PREFIX (10.88, the
# first two octets of the networks) and OUTPOST_STATE_DIR (the directory of
# secrets, certificates and join tokens: .state for the project outpost,
# .state-<project> for any other); down.sh takes the same.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
project=${COMPOSE_PROJECT_NAME:-outpost}
net=${OUTPOST_NET_PREFIX:-10.88}
# Each project has a state directory of its own: down.sh deletes it.
if [ "$project" = outpost ]; then state=${OUTPOST_STATE_DIR:-./.state}; else state=${OUTPOST_STATE_DIR:-./.state-$project}; fi
state=$(mkdir -p "$state" && cd "$state" && pwd)
export OUTPOST_STATE_DIR=$state OUTPOST_NET_PREFIX=$net
compose() { $COMPOSE -p "$project" -f "$here/docker-compose.yml" "$@"; }
ctl=${OUTPOSTCTL:-$root/bin/linux-amd64/outpostctl}
export OUTPOST_CONTROLLER=127.0.0.1:${OUTPOST_CONTROLLER_PORT:-7000}
# The controllers serve TLS only, with a certificate from the cluster CA kept
# in etcd (docs/security.md). Each writes the CA certificate at start to the
# bind-mounted <state>/pki/ca.crt (-ca-cert-out), and outpostctl trusts that
# file alone. It comes from the controller through the local file system, so
# nothing on the network can substitute another CA; `outpostctl pki ca` would
# need a connection that already trusts the CA (or an unverified first
# contact, checked only against a pin we would have no safe copy of).
export OUTPOST_TLS_CA=$state/pki/ca.crt
DOMAIN=www.demo.test
CNAME=$DOMAIN.cdn.outpost.test

./init.sh
if [ "$net" != 10.88 ]; then
  # The coverage zone names the region networks: follow their prefix.
  sed "s/\"10\.88\./\"$net./g" coverage-zone.json > "$state/coverage-zone.json"
  export OUTPOST_COVERAGE_ZONE=${OUTPOST_COVERAGE_ZONE:-$state/coverage-zone.json}
fi
operator=$(cat "$state/bootstrap.token")
op() { OUTPOST_TOKEN=$operator "$ctl" "$@"; }

echo "== etcd, controllers, origin"
compose up -d etcd-1 etcd-2 etcd-3 controller-1 controller-2 origin

echo "== waiting for the controller on $OUTPOST_CONTROLLER (TLS, CA $OUTPOST_TLS_CA)"
for i in $(seq 1 90); do
  # A ca.crt left from an earlier cluster fails the check until the
  # controllers overwrite it.
  if [ -s "$OUTPOST_TLS_CA" ] && op whoami >/dev/null 2>&1; then break; fi
  [ "$i" = 90 ] && { echo "controller not ready after 90 s"; compose logs --tail 30 controller-1; exit 1; }
  sleep 1
done
op whoami

# Edge nodes and schedulers (members) join once with a one-time join token
# bound to their name and role, then keep their key and certificate in their
# volume and renew it over mutual TLS. Each service reads its token from
# <state>/members/<service>.env; a service named scheduler-* is a scheduler,
# any other an edge node. A member needs a new token only if it has no valid
# certificate and its env file holds no token it can still use: one for this
# cluster's CA, not used yet (no certificate was issued for its ID) and
# written less than 50 minutes ago (tokens last an hour).
members=$(grep -o '/members/[A-Za-z0-9._-]*\.env' docker-compose.yml | sort -u | sed 's,.*/,,; s,\.env$,,')
joined() { # the members with a valid certificate, one per line
  op node certs -o json | jq -r '[.certificates[]? | select(.revokeTime == null and
    (.notAfter | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601) > now) | .name] | unique[]'
}
pin=$(op pki ca --pin)
have=$(joined)
used=$(op node certs -o json | jq -r '.certificates[]?.issuedFor')
for m in $members; do
  f=$state/members/$m.env
  case $m in
    scheduler-*) role=scheduler var=OUTPOST_SCHEDULER_JOIN_TOKEN ;;
    *) role=node var=OUTPOST_NODE_JOIN_TOKEN ;;
  esac
  if grep -qxF "$m" <<<"$have"; then continue; fi
  tok=$(sed -n "s/^$var=//p" "$f")
  id=$(sed -n 's/^# join token ID: //p' "$f")
  if [[ $tok == "OPJ1-${pin#sha256:}-"* ]] && [ -n "$id" ] && ! grep -qxF "$id" <<<"$used" &&
    [ -n "$(find "$f" -mmin -50)" ]; then continue; fi
  echo "== join token for $m (role $role) into $f"
  resp=$(op node join-token create --name "$m" --role "$role" --ttl 1h --description "compose $m" -o json)
  (umask 077 && jq -r --arg var "$var" '"# join token ID: \(.tokenId)\n# expires \(.expireTime)\n\($var)=\(.token)"' <<<"$resp" > "$f.tmp" &&
    mv "$f.tmp" "$f")
done

echo "== edge nodes and schedulers"
compose up -d

if [ ! -s "$state/admin.token" ]; then
  echo "== demo account and its admin token"
  op account get demo >/dev/null 2>&1 || op account create demo --display-name "Demo account"
  secret=$(op token create --account demo --role admin --description "compose demo admin" -o json | jq -r .secret)
  (umask 077 && printf '%s\n' "$secret" > "$state/admin.token")
fi
admin=$(cat "$state/admin.token")
if ! OUTPOST_TOKEN=$admin "$ctl" domain get "$DOMAIN" >/dev/null 2>&1; then
  echo "== demo domain $DOMAIN, origin the origin container ($net.0.40:80)"
  OUTPOST_TOKEN=$admin "$ctl" domain add "$DOMAIN" --origin ip:$net.0.40
fi

if [ ! -s "$state/demo.crt" ]; then
  echo "== HTTPS for $DOMAIN with a self-signed certificate ($state/demo.crt); the origin speaks plain HTTP"
  OUTPOST_TOKEN=$admin "$ctl" origin protocol "$DOMAIN" --policy http >/dev/null
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
    -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN" \
    -keyout "$state/demo.key" -out "$state/demo.crt" 2>/dev/null)
  id=$(OUTPOST_TOKEN=$admin "$ctl" cert upload --cert "$state/demo.crt" --key "$state/demo.key")
  OUTPOST_TOKEN=$admin "$ctl" https enable "$DOMAIN" --cert-id "$id" >/dev/null
fi

echo "== waiting for the edge nodes and schedulers to join"
for i in $(seq 1 90); do
  missing=$(comm -23 <(tr ' ' '\n' <<<"$members" | sort) <(joined | sort))
  [ -z "$missing" ] && break
  [ "$i" = 90 ] && { echo "no certificate after 90 s for:" $missing; op node certs; exit 1; }
  sleep 1
done
op node certs

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
    if curl -fsS -o /dev/null --cacert "$state/demo.crt" --resolve "$DOMAIN:$port:127.0.0.1" "https://$DOMAIN:$port/"; then break; fi
    [ "$i" = 60 ] && { echo "127.0.0.1:$port does not serve $DOMAIN over HTTPS"; exit 1; }
    sleep 1
  done
  echo "127.0.0.1:$port serves $DOMAIN over HTTPS"
done

cat <<MSG

Outpost is up (compose project "$project"). Try:

  export OUTPOST_CONTROLLER=$OUTPOST_CONTROLLER
  export OUTPOST_TLS_CA=$OUTPOST_TLS_CA   # the cluster CA
  export OUTPOST_TOKEN=\$(cat $state/admin.token)   # demo account admin
  $ctl domain list
  curl -si -H 'Host: $DOMAIN' http://127.0.0.1:${OUTPOST_EU_HTTP_PORT:-8081}/   # edge-eu-1
  curl -s --cacert $state/demo.crt --resolve $DOMAIN:${OUTPOST_US_HTTPS_PORT:-8442}:127.0.0.1 https://$DOMAIN:${OUTPOST_US_HTTPS_PORT:-8442}/   # edge-us-1
  dig @127.0.0.1 -p ${OUTPOST_DNS_PORT:-7053} $CNAME A +subnet=198.51.100.0/24   # us nodes first

The operator (bootstrap) token is in $state/bootstrap.token.
Tear it down with: make compose-down
MSG
