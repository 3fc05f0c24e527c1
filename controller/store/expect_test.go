package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/outpost-cdn/outpost/controller/store"
)

// TestExpect: a key guarded at a revision read outside the transaction
// commits while it still has that revision, and conflicts once it changed
// or was deleted; revision 0 means the key must not exist.
func TestExpect(t *testing.T) {
	s, cli := testStore(t)
	ctx := context.Background()
	put, err := cli.Put(ctx, "/outpost/test/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	rev := put.Header.Revision

	commit := func(key string, modRev int64) error {
		tx := s.Begin()
		tx.Expect(key, modRev)
		tx.PutRaw(key, "written")
		_, err := tx.Commit(ctx)
		return err
	}
	if err := commit("/outpost/test/a", rev); err != nil {
		t.Fatalf("unchanged key: %v", err)
	}
	// It changed (by the commit above): the old revision no longer holds.
	if err := commit("/outpost/test/a", rev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("changed key: %v, want ErrConflict", err)
	}
	if err := commit("/outpost/test/new", 0); err != nil {
		t.Fatalf("absent key at 0: %v", err)
	}
	if err := commit("/outpost/test/new", 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("present key at 0: %v, want ErrConflict", err)
	}
	kv, _, err := s.GetKV(ctx, "/outpost/test/new")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/outpost/test/new"); err != nil {
		t.Fatal(err)
	}
	if err := commit("/outpost/test/new", kv.ModRevision); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("deleted key: %v, want ErrConflict", err)
	}
	if v, found, err := s.GetRaw(ctx, "/outpost/test/new"); err != nil || found {
		t.Fatalf("a conflicting commit wrote %q", v)
	}
}
