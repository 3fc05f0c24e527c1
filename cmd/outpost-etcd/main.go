// Command outpost-etcd is etcd itself, built from the etcd server module that
// Outpost already depends on (for its embedded etcd), so that the multi-host
// deployment (deploy/) can run an etcd cluster from a locally built static
// binary, without pulling an image. It takes etcd's own flags and environment
// (TLS included: ETCD_CERT_FILE, ETCD_CLIENT_CERT_AUTH, ETCD_PEER_*, ...).
//
// `outpost-etcd snapshot save|status|restore` backs up and restores the
// cluster (internal/etcdsnapshot), since the image has no etcdctl.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"

	"github.com/outpost-cdn/outpost/internal/etcdsnapshot"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "snapshot" {
		os.Exit(etcdsnapshot.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	etcdmain.Main(os.Args)
}
