#!/usr/bin/env bash
# Generate the secrets of the compose topology into its state directory,
# OUTPOST_STATE_DIR (default deploy/compose/.state/; gitignored, as is
# .state-*/), once: the controllers' keyring, the bootstrap operator token,
# the gossip keyring of the nodes and schedulers, and etcd's TLS
# certificates (made with openssl; see "etcd TLS" below). An existing file is
# kept, so running it again changes nothing. It also makes <state>/pki/, where
# the controllers write the cluster CA certificate (-ca-cert-out), and an
# empty env file per edge node and scheduler, <state>/members/<service>.env
# (every one docker-compose.yml names), into which up.sh writes the member's
# join token once the controllers answer. OUTPOST_NET_PREFIX (default 10.88)
# is the first two octets of the networks, for the etcd members' addresses
# in their certificates.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
state=${OUTPOST_STATE_DIR:-./.state}
net=${OUTPOST_NET_PREFIX:-10.88}
mkdir -p "$state"
if [ ! -s "$state/keyring" ]; then
  printf 'k1:%s\n' "$(head -c32 /dev/urandom | base64)" > "$state/keyring"
  echo "wrote $state/keyring"
fi
if [ ! -s "$state/bootstrap.token" ]; then
  head -c32 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_' > "$state/bootstrap.token"
  echo "wrote $state/bootstrap.token"
fi
if [ ! -s "$state/gossip.keys" ]; then
  head -c32 /dev/urandom | base64 > "$state/gossip.keys"
  echo "wrote $state/gossip.keys"
fi
mkdir -p "$state/pki" "$state/members"
members=$(grep -o '/members/[A-Za-z0-9._-]*\.env' docker-compose.yml | sort -u | sed "s,^,$state,")
for f in $members; do [ -e "$f" ] || : > "$f"; done

# etcd TLS (docs/operations.md#etcd-tls). Two CAs, whose keys stay in
# <state>/etcd/ca/ and are never mounted into a container:
#   ca       signs the members' server certificates (client port 2379) and
#            the controllers' client certificate (--client-cert-auth);
#   peer-ca  signs the members' peer certificates (port 2380), so that a
#            client certificate cannot join the cluster as a member.
# Each container mounts one directory: <state>/etcd/etcd-N/ (ca.crt,
# peer-ca.crt, server.{crt,key}, peer.{crt,key}) or <state>/etcd/controller/
# (ca.crt, client.{crt,key}); <state>/etcd/operator/ holds the same files
# for etcd clients outside the containers (backups, the fault tests). Keys
# are ECDSA P-256; leaves last 825 days.
pki=$state/etcd
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
  ip=$net.0.1$n
  # Certificates made for other addresses (another OUTPOST_NET_PREFIX with
  # the same state directory) are made again from the same CAs.
  for f in server peer; do
    if [ -s "$pki/etcd-$n/$f.crt" ] &&
      ! openssl x509 -in "$pki/etcd-$n/$f.crt" -noout -ext subjectAltName 2>/dev/null | grep -Eq "IP Address:${ip//./\\.}(,|\$)"; then
      echo "$pki/etcd-$n/$f.crt does not name $ip: making it again"
      rm -f "$pki/etcd-$n/$f.crt" "$pki/etcd-$n/$f.key"
    fi
  done
  issue ca etcd-$n server etcd-$n serverAuth "DNS:etcd-$n,DNS:localhost,IP:$ip,IP:127.0.0.1"
  issue peer-ca etcd-$n peer etcd-$n serverAuth,clientAuth "DNS:etcd-$n,IP:$ip"
done
issue ca controller client outpost-controller clientAuth ""
issue ca operator client etcd-operator clientAuth ""   # backups: docs/operations.md
# The containers run as root and read these through read-only bind mounts;
# the controller refuses a keyring readable by group or others.
chmod 600 "$state/keyring" "$state/bootstrap.token" "$state/gossip.keys" $members
