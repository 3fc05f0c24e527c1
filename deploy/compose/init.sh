#!/usr/bin/env bash
# Generate the secrets of the compose topology into deploy/compose/.state/
# (gitignored), once: the controllers' keyring, the bootstrap operator token,
# the gossip keyring of the nodes and schedulers, and etcd's TLS
# certificates (made with openssl; see "etcd TLS" below). An existing file is
# kept, so running it again changes nothing. node.env starts empty; up.sh
# fills in the node token once the controllers answer.
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

# etcd TLS (docs/operations.md#etcd-tls). Two CAs, whose keys stay in
# .state/etcd/ca/ and are never mounted into a container:
#   ca       signs the members' server certificates (client port 2379) and
#            the controllers' client certificate (--client-cert-auth);
#   peer-ca  signs the members' peer certificates (port 2380), so that a
#            client certificate cannot join the cluster as a member.
# Each container mounts one directory: .state/etcd/etcd-N/ (ca.crt,
# peer-ca.crt, server.{crt,key}, peer.{crt,key}) or .state/etcd/controller/
# (ca.crt, client.{crt,key}). Keys are ECDSA P-256; leaves last 825 days.
pki=.state/etcd
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
newca() { # name, common name
  [ -s "$pki/ca/$1.crt" ] && return
  newkey "$pki/ca/$1.key"
  openssl req -x509 -new -key "$pki/ca/$1.key" -subj "/O=Outpost compose/CN=$2" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/ca/$1.crt" 2>/dev/null
  echo "wrote $pki/ca/$1.crt"
}
issue() { # ca, dir, file name, common name, extendedKeyUsage, subjectAltName (or "")
  [ -s "$pki/$2/$3.crt" ] && return
  mkdir -p "$pki/$2"
  newkey "$pki/$2/$3.key"
  { echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$5"
    [ -z "$6" ] || echo "subjectAltName=$6"
  } > "$pki/$2/$3.ext"
  openssl req -new -key "$pki/$2/$3.key" -subj "/O=Outpost compose/CN=$4" 2>/dev/null |
    openssl x509 -req -CA "$pki/ca/$1.crt" -CAkey "$pki/ca/$1.key" -set_serial "0x$(openssl rand -hex 16)" \
      -days 825 -extfile "$pki/$2/$3.ext" -out "$pki/$2/$3.crt" 2>/dev/null
  rm -f "$pki/$2/$3.ext"
  cp "$pki/ca/$1.crt" "$pki/$2/$1.crt"
  echo "wrote $pki/$2/$3.crt"
}
mkdir -p "$pki/ca"
newca ca "etcd CA"
newca peer-ca "etcd peer CA"
for n in 1 2 3; do
  ip=10.88.0.1$n
  issue ca etcd-$n server etcd-$n serverAuth "DNS:etcd-$n,DNS:localhost,IP:$ip,IP:127.0.0.1"
  issue peer-ca etcd-$n peer etcd-$n serverAuth,clientAuth "DNS:etcd-$n,IP:$ip"
done
issue ca controller client outpost-controller clientAuth ""
issue ca operator client etcd-operator clientAuth ""   # backups: docs/operations.md
# The containers run as root and read these through read-only bind mounts;
# the controller refuses a keyring readable by group or others.
chmod 600 .state/keyring .state/bootstrap.token .state/gossip.keys .state/node.env
