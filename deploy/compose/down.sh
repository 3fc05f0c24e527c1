#!/usr/bin/env bash
# Tear the compose topology down: containers, networks and volumes (etcd data
# and the nodes' snapshots). The secrets in .state/ are removed too, unless
# KEEP_STATE=1, since they belong to the etcd data just deleted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
[ -e "$here/.state/node.env" ] || { mkdir -p "$here/.state"; : > "$here/.state/node.env"; }
$COMPOSE -p outpost -f "$here/docker-compose.yml" down --volumes --remove-orphans
# Volumes of services added in other compose files (see "Scaling nodes" in
# docs/deployment.md) are not named in this one: remove the project's rest.
vols=$(docker volume ls -q --filter label=com.docker.compose.project=outpost)
if [ -n "$vols" ]; then docker volume rm $vols; fi
if [ "${KEEP_STATE:-0}" != 1 ]; then rm -rf "$here/.state"; fi
