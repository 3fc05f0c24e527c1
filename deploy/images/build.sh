#!/usr/bin/env bash
# Build the static binaries into bin/linux-amd64/ and the FROM-scratch images
# outpost/{controller,node,scheduler,etcd,origin} from them. No network access
# is needed during `docker build`: the context holds only prebuilt files.
# Environment: GO (default go), TAG (default latest), GOARCH (default amd64).
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
TAG=${TAG:-latest}
ARCH=${GOARCH:-amd64}
CTX=bin/linux-$ARCH
mkdir -p "$CTX"

echo "== static binaries into $CTX/"
CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH $GO build -trimpath -ldflags "-s -w" -o "$CTX/" \
  ./cmd/outpost-controller ./cmd/outpost-node ./cmd/outpost-scheduler ./cmd/outpostctl \
  ./cmd/outpost-etcd ./cmd/outpost-origin

cp /etc/ssl/certs/ca-certificates.crt "$CTX/ca-certificates.crt"
cp "$($GO env GOROOT)/lib/time/zoneinfo.zip" "$CTX/zoneinfo.zip"
cat > "$CTX/.dockerignore" <<'IGN'
*
!outpost-controller
!outpost-node
!outpost-scheduler
!outpostctl
!outpost-etcd
!outpost-origin
!ca-certificates.crt
!zoneinfo.zip
IGN

for role in controller node scheduler etcd origin; do
  echo "== outpost/$role:$TAG"
  docker build -q --target "$role" -t "outpost/$role:$TAG" -f deploy/images/Dockerfile "$CTX"
done
docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep '^outpost/'
