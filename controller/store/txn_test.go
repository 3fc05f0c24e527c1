package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/etcdembed"
	"github.com/outpost-cdn/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// testStore starts an embedded etcd, with the limits the controller runs
// it with, and returns a store on it and its raw client.
func testStore(t *testing.T) (*store.Store, *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := etcdembed.Start(ctx, etcdembed.Config{Dir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Unsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), Logger: zap.NewNop(), MaxCallSendMsgSize: etcdembed.MaxRequestBytes + 1<<20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return store.New(cli), cli
}

// TestPreloadGuardsEveryKey: keys read in batches are guarded like keys
// read one by one, missing ones included, and are served from memory at
// the snapshot afterwards.
func TestPreloadGuardsEveryKey(t *testing.T) {
	s, cli := testStore(t)
	ctx := context.Background()
	const n = 3*store.PreloadBatch + 5 // several batches
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("/outpost/test/k%04d", i)
		if i%10 != 0 { // every tenth key is missing
			if _, err := cli.Put(ctx, keys[i], fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		change func() error
		ok     bool
	}{
		{"no change", func() error { return nil }, true},
		{"a key changed", func() error { _, err := cli.Put(ctx, keys[n-1], "x"); return err }, false},
		{"a key deleted", func() error { _, err := cli.Delete(ctx, keys[store.PreloadBatch+1]); return err }, false},
		{"a missing key created", func() error { _, err := cli.Put(ctx, keys[2*store.PreloadBatch+10], "new"); return err }, false},
		{"an unread key changed", func() error { _, err := cli.Put(ctx, "/outpost/test/other", "x"); return err }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := s.Begin()
			if err := tx.Preload(ctx, append(keys, keys[0], keys[1])...); err != nil {
				t.Fatal(err)
			}
			rev := tx.Revision()
			if err := tc.change(); err != nil {
				t.Fatal(err)
			}
			// Reads after the change still see the snapshot.
			for i, k := range keys {
				v, found, err := tx.GetRaw(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				cur, _ := cli.Get(ctx, k, clientv3.WithRev(rev))
				if found != (len(cur.Kvs) == 1) || (found && v != string(cur.Kvs[0].Value)) {
					t.Fatalf("key %d: %q %v, at the snapshot %v", i, v, found, cur.Kvs)
				}
			}
			tx.PutRaw("/outpost/test/written", tc.name)
			_, err := tx.Commit(ctx)
			if tc.ok && err != nil {
				t.Fatalf("commit: %v", err)
			}
			if !tc.ok && !errors.Is(err, store.ErrConflict) {
				t.Fatalf("commit after %s: %v, want a conflict", tc.name, err)
			}
		})
	}
}

// TestListGuardsThePrefix: a key created under a listed prefix aborts the
// commit; a key deleted there does not.
func TestListGuardsThePrefix(t *testing.T) {
	s, cli := testStore(t)
	ctx := context.Background()
	for _, k := range []string{"/outpost/idx/a", "/outpost/idx/b", "/outpost/idxx"} {
		if _, err := cli.Put(ctx, k, ""); err != nil {
			t.Fatal(err)
		}
	}
	tx := s.Begin()
	kvs, err := tx.List(ctx, "/outpost/idx/")
	if err != nil || len(kvs) != 2 || kvs[0].Key != "/outpost/idx/a" || kvs[1].Key != "/outpost/idx/b" {
		t.Fatalf("list %v %v", kvs, err)
	}
	if _, err := cli.Delete(ctx, "/outpost/idx/a"); err != nil {
		t.Fatal(err)
	}
	tx.PutRaw("/outpost/out", "1")
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatalf("a delete under the prefix aborted the commit: %v", err)
	}
	tx = s.Begin()
	if _, err := tx.List(ctx, "/outpost/idx/"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/outpost/idx/c", ""); err != nil {
		t.Fatal(err)
	}
	tx.PutRaw("/outpost/out", "2")
	if _, err := tx.Commit(ctx); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("commit after a key was added under the prefix: %v", err)
	}
}

// TestCountGuarded: the count is the snapshot's, even when keys are added
// after it; a writer that bumps the guard key aborts the commit, whether
// it added a key or removed one; the guard key need not exist yet.
func TestCountGuarded(t *testing.T) {
	s, cli := testStore(t)
	ctx := context.Background()
	const prefix, guard = "/outpost/idx/", "/outpost/idx-guard"
	for _, k := range []string{"a", "b"} {
		if _, err := cli.Put(ctx, prefix+k, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		writer func(*store.Txn)
		ok     bool
	}{
		{"no writer", nil, true},
		{"a key added, the guard bumped", func(w *store.Txn) { w.PutRaw(prefix+"c", ""); w.Bump(guard) }, false},
		{"a key removed, the guard bumped", func(w *store.Txn) { w.Delete(prefix + "c"); w.Bump(guard) }, false},
		{"an unrelated write", func(w *store.Txn) { w.PutRaw("/outpost/other", "") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			tx := s.Begin()
			n, err := tx.CountGuarded(ctx, prefix, guard)
			if err != nil || n != before.Count {
				t.Fatalf("count %d, %v; want %d", n, err, before.Count)
			}
			if tc.writer != nil {
				w := s.Begin()
				tc.writer(w)
				if _, err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// Counted again at the snapshot: the same.
			if again, err := tx.CountGuarded(ctx, prefix, guard); err != nil || again != n {
				t.Fatalf("second count %d, %v; want %d", again, err, n)
			}
			tx.PutRaw("/outpost/out", tc.name)
			_, err = tx.Commit(ctx)
			if tc.ok && err != nil {
				t.Fatalf("commit: %v", err)
			}
			if !tc.ok && !errors.Is(err, store.ErrConflict) {
				t.Fatalf("commit after %s: %v, want a conflict", tc.name, err)
			}
		})
	}
}

// TestTooLargeTransaction: a transaction past etcd's operation limit is
// refused with ResourceExhausted TransactionTooLarge, not with the
// Unavailable a client would retry.
func TestTooLargeTransaction(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	tx := s.Begin()
	for i := 0; i <= etcdembed.MaxTxnOps; i++ {
		tx.PutRaw(fmt.Sprintf("/outpost/big/%06d", i), "")
	}
	_, err := tx.Commit(ctx)
	if !errors.Is(err, store.ErrTooLarge) || apierr.Reason(err) != apierr.ReasonTransactionTooLarge {
		t.Fatalf("commit of %d operations: %v", etcdembed.MaxTxnOps+1, err)
	}
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Code != codes.ResourceExhausted || status.Code(ae.GRPCStatus().Err()) != codes.ResourceExhausted {
		t.Fatalf("error %v", err)
	}
	// The limit itself is fine.
	tx = s.Begin()
	for i := 0; i < etcdembed.MaxTxnOps; i++ {
		tx.PutRaw(fmt.Sprintf("/outpost/big/%06d", i), "")
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit of %d operations: %v", etcdembed.MaxTxnOps, err)
	}
}
