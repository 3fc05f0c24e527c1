package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/etcdembed"
	"github.com/outpost-cdn/outpost/internal/seal"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestConfigCacheBoundedLog checks the cache's contract with slow streams:
// it keeps at most maxLog changes, and a position older than that must be
// answered with a snapshot (ok=false), never with a partial history.
func TestConfigCacheBoundedLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := testEtcd(t, ctx)
	c := runTestCache(t, ctx, cli, 3)

	put := func(i int) int64 {
		b, _ := store.Encode(&outpostv1.Domain{Name: fmt.Sprintf("d%d.example.com", i)})
		resp, err := cli.Put(ctx, store.DomainKey(fmt.Sprintf("d%d.example.com", i)), string(b))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	var revs []int64
	for i := 0; i < 6; i++ {
		revs = append(revs, put(i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Revision() < revs[5] {
		if time.Now().After(deadline) {
			t.Fatal("cache did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, ok := c.Since(revs[0]); ok {
		t.Fatal("a position older than the log must need a snapshot")
	}
	changes, _, ok := c.Since(revs[3])
	if !ok || len(changes) != 2 || changes[0].GetRevision() != revs[4] || changes[1].GetRevision() != revs[5] {
		t.Fatalf("Since(revs[3]) = %v, %v", changes, ok)
	}
	if _, _, ok := c.Since(revs[5] + 100); ok {
		t.Fatal("a position from the future (another etcd) must need a snapshot")
	}
	snap, ok := c.Snapshot()
	if !ok || len(snap.GetDomains()) != 6 || snap.GetRevision() != revs[5] {
		t.Fatalf("snapshot %d domains at %d", len(snap.GetDomains()), snap.GetRevision())
	}
}

// testEtcd starts an embedded etcd for the test and returns a client.
func testEtcd(t *testing.T, ctx context.Context) *clientv3.Client {
	t.Helper()
	e, err := etcdembed.Start(ctx, etcdembed.Config{Dir: filepath.Join(t.TempDir(), "etcd"), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Unsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// runTestCache runs a config cache on cli until the test ends.
func runTestCache(t *testing.T, ctx context.Context, cli *clientv3.Client, maxLog int) *configCache {
	t.Helper()
	kr, _ := seal.GenerateKeyring("t")
	ring, err := seal.ParseKeyring(kr)
	if err != nil {
		t.Fatal(err)
	}
	c := newConfigCache(store.New(cli), seal.NewSealer(ring), slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.maxLog = maxLog
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return c
}

// TestConfigCacheContent checks purges, prefetches and the purge floor:
// loaded from etcd at start with each purge's revision, changed by later
// revisions (one change each, purge_floor only in snapshots), and snapshots
// handed out earlier left as they were.
func TestConfigCacheContent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := testEtcd(t, ctx)
	put := func(key string, msg proto.Message) int64 {
		t.Helper()
		b, _ := store.Encode(msg)
		resp, err := cli.Put(ctx, key, string(b))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	const a, b, p = "task-0000000000000001-aaaa", "task-0000000000000002-bbbb", "task-0000000000000003-cccc"
	revB := put(store.PurgeKey(b), &outpostv1.Purge{TaskId: b, Type: outpostv1.RefreshType_REFRESH_TYPE_FILE, Entries: []string{"https://x.example.com/b"}})
	revA := put(store.PurgeKey(a), &outpostv1.Purge{TaskId: a, Type: outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY, Entries: []string{"https://x.example.com/a/"}})
	put(store.PrefetchKey(p), &outpostv1.Prefetch{TaskId: p, Urls: []string{"https://x.example.com/p"}, Region: "eu"})
	if _, err := cli.Put(ctx, store.PurgeFloorKey(), "1"); err != nil {
		t.Fatal(err)
	}

	c := runTestCache(t, ctx, cli, 100)
	deadline := time.Now().Add(10 * time.Second)
	var snap *outpostv1.StreamConfigResponse
	for ok := false; !ok; snap, ok = c.Snapshot() {
		if time.Now().After(deadline) {
			t.Fatal("cache did not load")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Purges in the order they were made, with their revisions.
	if len(snap.GetPurges()) != 2 || snap.GetPurges()[0].GetTaskId() != b || snap.GetPurges()[0].GetRevision() != revB ||
		snap.GetPurges()[1].GetTaskId() != a || snap.GetPurges()[1].GetRevision() != revA || snap.GetPurges()[1].GetEntries()[0] != "https://x.example.com/a/" {
		t.Fatalf("snapshot purges %v", snap.GetPurges())
	}
	if len(snap.GetPrefetches()) != 1 || snap.GetPrefetches()[0].GetRegion() != "eu" || snap.GetPurgeFloor() != 1 {
		t.Fatalf("snapshot prefetches %v, floor %d", snap.GetPrefetches(), snap.GetPurgeFloor())
	}
	before := proto.Clone(snap)

	// Retention: delete a purge and the prefetch and raise the floor, in
	// one revision.
	txn, err := cli.Txn(ctx).Then(clientv3.OpDelete(store.PurgeKey(b)), clientv3.OpDelete(store.PrefetchKey(p)),
		clientv3.OpPut(store.PurgeFloorKey(), strconv.FormatInt(revB, 10))).Commit()
	if err != nil {
		t.Fatal(err)
	}
	rev := txn.Header.Revision
	for c.Revision() < rev {
		if time.Now().After(deadline) {
			t.Fatal("cache did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	changes, _, ok := c.Since(snap.GetRevision())
	if !ok || len(changes) != 1 {
		t.Fatalf("changes %v %v", changes, ok)
	}
	ch := changes[0]
	if ch.GetRevision() != rev || ch.GetSnapshot() || ch.GetPurgeFloor() != 0 ||
		fmt.Sprint(ch.GetRemovedPurges()) != "["+b+"]" || fmt.Sprint(ch.GetRemovedPrefetches()) != "["+p+"]" || len(ch.GetPurges()) != 0 {
		t.Fatalf("change %v", ch)
	}
	now, _ := c.Snapshot()
	if len(now.GetPurges()) != 1 || now.GetPurges()[0].GetTaskId() != a || len(now.GetPrefetches()) != 0 || now.GetPurgeFloor() != revB {
		t.Fatalf("snapshot after retention %v", now)
	}
	if !proto.Equal(before, snap) {
		t.Fatal("a snapshot handed out earlier changed")
	}
	// A lower floor (never written by the controllers) does not lower it.
	if _, err := cli.Put(ctx, store.PurgeFloorKey(), "0"); err != nil {
		t.Fatal(err)
	}
	added := put(store.PurgeKey("task-0000000000000004-dddd"), &outpostv1.Purge{Entries: []string{"https://x.example.com/d"}})
	for c.Revision() < added {
		if time.Now().After(deadline) {
			t.Fatal("cache did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	changes, _, _ = c.Since(rev)
	if len(changes) != 2 || changes[1].GetPurges()[0].GetTaskId() != "task-0000000000000004-dddd" || changes[1].GetPurges()[0].GetRevision() != added {
		t.Fatalf("changes %v", changes)
	}
	if now, _ := c.Snapshot(); now.GetPurgeFloor() != revB || len(now.GetPurges()) != 2 {
		t.Fatalf("floor %d, purges %v", now.GetPurgeFloor(), now.GetPurges())
	}
}
