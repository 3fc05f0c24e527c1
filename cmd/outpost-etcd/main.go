// Command outpost-etcd is etcd itself, built from the etcd server module that
// Outpost already depends on (for its embedded etcd), so that the multi-host
// deployment (deploy/) can run an etcd cluster from a locally built static
// binary, without pulling an image. It takes etcd's own flags and environment.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
