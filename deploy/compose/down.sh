#!/usr/bin/env bash
# Tear the compose topology down: containers, networks and volumes (etcd data,
# the nodes' snapshots and the members' certificates). The secrets in the
# state directory are removed too, since they belong to the etcd data just
# deleted. With KEEP_STATE=1 the secrets init.sh made stay (keyring, bootstrap
# token, gossip keyring, etcd's certificates), but not what belonged to the
# deleted cluster: the members' join tokens (<state>/members/), its CA
# certificate (<state>/pki/), the demo admin token and the demo certificate.
# Give it the COMPOSE_PROJECT_NAME (outpost) and OUTPOST_STATE_DIR that up.sh
# was given: the state directory is .state for the project outpost and
# .state-<project> for any other, so tearing down one project never touches
# another's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
project=${COMPOSE_PROJECT_NAME:-outpost}
if [ "$project" = outpost ]; then state=${OUTPOST_STATE_DIR:-./.state}; else state=${OUTPOST_STATE_DIR:-./.state-$project}; fi
state=$(mkdir -p "$state" && cd "$state" && pwd)
export OUTPOST_STATE_DIR=$state
# Compose refuses a file whose env_file is missing: make empty ones.
(umask 077 && mkdir -p "$state/members" &&
  for m in $(grep -o '/members/[A-Za-z0-9._-]*\.env' docker-compose.yml | sort -u); do
    [ -e "$state$m" ] || : > "$state$m"
  done)
$COMPOSE -p "$project" -f "$here/docker-compose.yml" down --volumes --remove-orphans
# Volumes of services added in other compose files (see "Scaling nodes" in
# docs/deployment.md) are not named in this one: remove the project's rest.
vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$project")
if [ -n "$vols" ]; then docker volume rm $vols; fi
if [ "${KEEP_STATE:-0}" != 1 ]; then
  rm -rf "$state"
else
  rm -rf "$state/members" "$state/pki"
  rm -f "$state/admin.token" "$state/demo.crt" "$state/demo.key" "$state/coverage-zone.json"
fi
