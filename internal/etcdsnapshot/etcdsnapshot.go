// Package etcdsnapshot is the `snapshot` subcommand of outpost-etcd: save a
// snapshot of a running etcd member, show a snapshot file's status, and
// restore one into a new data directory. It wraps etcd's own snapshot code
// (go.etcd.io/etcd/etcdutl/v3/snapshot, what `etcdutl snapshot` and
// `etcdctl snapshot save` run), so that the FROM-scratch etcd image, which
// has no etcdctl or etcdutl, can back up and restore its cluster.
//
// Flags follow etcdctl and etcdutl (--endpoints, --cacert, --cert, --key;
// --data-dir, --name, --initial-cluster, ...). Their defaults come from
// the environment a member already has: ETCDCTL_* for the client flags,
// and the member's own ETCD_* variables for restore, so that the command
// run in a member's container restores that member.
package etcdsnapshot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

const usage = `usage: outpost-etcd snapshot COMMAND [flags]

Commands:
  save FILE      save a snapshot of one running member to FILE
  status FILE    print a snapshot file's hash, revision, keys and size (JSON)
  restore FILE   restore FILE into a new, empty data directory

Run "outpost-etcd snapshot COMMAND -h" for a command's flags.
`

// Main runs the snapshot subcommand with args (those after "snapshot"),
// writing results to stdout and errors to stderr. It returns the exit
// status: 0 on success, 1 on failure, 2 on bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "save":
		err = save(args[1:], stdout, stderr)
	case "status":
		err = status(args[1:], stdout, stderr)
	case "restore":
		err = restore(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "outpost-etcd snapshot: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "outpost-etcd snapshot %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "outpost-etcd snapshot %s: %v\n", args[0], err)
		return 1
	}
}

type usageError struct{ error }

// parse parses args into fs and returns the single FILE argument.
func parse(fs *flag.FlagSet, args []string) (string, error) {
	// Allow the file before the flags, as etcdctl does.
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", usageError{err}
	}
	rest := fs.Args()
	if file == "" && len(rest) > 0 {
		file, rest = rest[0], rest[1:]
	}
	if file == "" || len(rest) > 0 {
		return "", usageError{errors.New("want exactly one FILE argument")}
	}
	return file, nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func save(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outpost-etcd snapshot save FILE", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoints", env("ETCDCTL_ENDPOINTS", "http://127.0.0.1:2379"), "client URL of the one member to snapshot (env ETCDCTL_ENDPOINTS)")
	cacert := fs.String("cacert", env("ETCDCTL_CACERT", ""), "PEM CA bundle to verify the member's certificate; default the system roots (env ETCDCTL_CACERT)")
	cert := fs.String("cert", env("ETCDCTL_CERT", ""), "PEM client certificate, for a member with --client-cert-auth (env ETCDCTL_CERT)")
	key := fs.String("key", env("ETCDCTL_KEY", ""), "PEM key of --cert (env ETCDCTL_KEY)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	file, err := parse(fs, args)
	if err != nil {
		return err
	}
	if strings.Contains(*endpoint, ",") {
		return usageError{errors.New("--endpoints: name exactly one member; a snapshot is one member's state")}
	}
	tlsConf, err := clientTLS(*cacert, *cert, *key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	version, err := snapshot.NewV3(zap.NewNop()).Save(ctx, clientv3.Config{
		Endpoints:   []string{*endpoint},
		TLS:         tlsConf,
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	}, file)
	if err != nil {
		return err
	}
	st, err := snapshot.NewV3(zap.NewNop()).Status(file)
	if err != nil {
		return fmt.Errorf("saved %s, but cannot read it back: %w", file, err)
	}
	fmt.Fprintf(stdout, "saved %s: revision %d, %d keys, %d bytes, etcd storage version %s\n", file, st.Revision, st.TotalKey, st.TotalSize, version)
	return nil
}

// clientTLS builds the client's TLS configuration; nil when no file is given.
func clientTLS(cacert, cert, key string) (*tls.Config, error) {
	if cacert == "" && cert == "" && key == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", cacert)
		}
		conf.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, usageError{errors.New("--cert and --key go together")}
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--cert %s, --key %s: %w", cert, key, err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

func status(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outpost-etcd snapshot status FILE", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file, err := parse(fs, args)
	if err != nil {
		return err
	}
	st, err := snapshot.NewV3(zap.NewNop()).Status(file)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(st)
}

func restore(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outpost-etcd snapshot restore FILE", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", env("ETCD_DATA_DIR", ""), "new data directory; must not exist or be empty (env ETCD_DATA_DIR)")
	name := fs.String("name", env("ETCD_NAME", "default"), "this member's name (env ETCD_NAME)")
	peerURLs := fs.String("initial-advertise-peer-urls", env("ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://localhost:2380"), "this member's peer URLs, comma-separated (env ETCD_INITIAL_ADVERTISE_PEER_URLS)")
	cluster := fs.String("initial-cluster", env("ETCD_INITIAL_CLUSTER", ""), "every member of the restored cluster, name=peer-URL,...; default NAME=PEER-URLS (env ETCD_INITIAL_CLUSTER)")
	token := fs.String("initial-cluster-token", env("ETCD_INITIAL_CLUSTER_TOKEN", "etcd-cluster"), "the restored cluster's token; use a new one, so the old members cannot talk to it (env ETCD_INITIAL_CLUSTER_TOKEN)")
	bump := fs.Uint64("bump-revision", 0, "raise the restored revision by this much, so that it never goes backwards for clients that saw later revisions (with --mark-compacted)")
	compacted := fs.Bool("mark-compacted", false, "mark the restored revision compacted, so that watches from before the restore fail instead of missing changes (with --bump-revision)")
	skipHash := fs.Bool("skip-hash-check", false, "restore a database file copied from a data directory, which has no snapshot hash")
	file, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *dataDir == "" {
		*dataDir = *name + ".etcd"
	}
	if *cluster == "" {
		*cluster = *name + "=" + *peerURLs
	}
	if (*bump > 0) != *compacted {
		return usageError{errors.New("--bump-revision and --mark-compacted go together")}
	}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        file,
		Name:                *name,
		OutputDataDir:       *dataDir,
		PeerURLs:            strings.Split(*peerURLs, ","),
		InitialCluster:      *cluster,
		InitialClusterToken: *token,
		SkipHashCheck:       *skipHash,
		RevisionBump:        *bump,
		MarkCompacted:       *compacted,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s as member %s of %s (bump-revision %s)\n", file, *dataDir, *name, *cluster, strconv.FormatUint(*bump, 10))
	return nil
}
