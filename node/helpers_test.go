package node_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type nodeOpts struct {
	cacheDir    string
	dataDir     string
	controllers []string
	name        string
	// cacheSyncWait is node.Config.CacheSyncWait.
	cacheSyncWait time.Duration
}

// startNode starts an edge node on free loopback ports. token is its join
// token; "" creates one (with env).
func startNode(t testing.TB, env *controllertest.Env, token string, o nodeOpts) *node.Node {
	t.Helper()
	if token == "" && env != nil {
		token = env.JoinToken(t)
	}
	if o.name == "" {
		o.name = "edge-1"
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.controllers == nil && env != nil {
		o.controllers = []string{env.Addr}
	}
	n, err := node.Start(context.Background(), node.Config{
		Name:          o.name,
		Region:        "test",
		Controllers:   o.controllers,
		JoinToken:     token,
		HTTPAddr:      "127.0.0.1:0",
		HTTPSAddr:     "127.0.0.1:0",
		DataDir:       o.dataDir,
		MetricsAddr:   "127.0.0.1:0",
		CacheDir:      o.cacheDir,
		CacheSyncWait: o.cacheSyncWait,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// eventually polls cond every 20ms for up to 15s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ipOrigin(addr string, port uint32) *outpostv1.Origin {
	return &outpostv1.Origin{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: addr, Port: port}
}
