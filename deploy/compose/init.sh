#!/usr/bin/env bash
# Generate the secrets of the compose topology into deploy/compose/.state/
# (gitignored), once: the controllers' keyring, the bootstrap operator token,
# and the gossip keyring of the nodes and schedulers. An existing file is kept,
# so running it again changes nothing. node.env starts empty; up.sh fills in
# the node token once the controllers answer.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p .state
if [ ! -s .state/keyring ]; then
  printf 'k1:%s\n' "$(head -c32 /dev/urandom | base64)" > .state/keyring
  echo "wrote .state/keyring"
fi
if [ ! -s .state/bootstrap.token ]; then
  head -c32 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_' > .state/bootstrap.token
  echo "wrote .state/bootstrap.token"
fi
if [ ! -s .state/gossip.keys ]; then
  head -c32 /dev/urandom | base64 > .state/gossip.keys
  echo "wrote .state/gossip.keys"
fi
[ -e .state/node.env ] || : > .state/node.env
# The containers run as root and read these through read-only bind mounts;
# the controller refuses a keyring readable by group or others.
chmod 600 .state/keyring .state/bootstrap.token .state/gossip.keys .state/node.env
