package controller

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/controller/store"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestConfigCacheACMEChallenges: a challenge already in etcd is in the
// first snapshot; a later one is in the change of its revision and in
// snapshots from then on; a deleted one is in the change's removed tokens
// and gone from snapshots. The token comes from the key.
func TestConfigCacheACMEChallenges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := testEtcd(t, ctx)
	put := func(token, domain string) int64 {
		b, _ := store.Encode(&outpostv1.AcmeChallenge{Domain: domain, KeyAuthorization: token + ".thumb"})
		resp, err := cli.Put(ctx, store.AcmeChallengeKey(token), string(b))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	put("tokenA", "a.example.com")
	c := runTestCache(t, ctx, cli, 16)
	waitRev := func(rev int64) {
		deadline := time.Now().Add(10 * time.Second)
		for c.Revision() < rev {
			if time.Now().After(deadline) {
				t.Fatal("cache did not catch up")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	rev0, err := store.New(cli).Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitRev(rev0)
	snap, _ := c.Snapshot()
	if got := snap.GetAcmeChallenges(); len(got) != 1 || got[0].GetToken() != "tokenA" || got[0].GetDomain() != "a.example.com" {
		t.Fatalf("first snapshot's challenges: %v", got)
	}

	revB := put("tokenB", "b.example.com")
	resp, err := cli.Delete(ctx, store.AcmeChallengeKey("tokenA"))
	if err != nil {
		t.Fatal(err)
	}
	revDel := resp.Header.Revision
	waitRev(revDel)
	changes, _, ok := c.Since(snap.GetRevision())
	if !ok || len(changes) != 2 {
		t.Fatalf("changes: %v, %v", changes, ok)
	}
	if got := changes[0].GetAcmeChallenges(); changes[0].GetRevision() != revB || len(got) != 1 || got[0].GetToken() != "tokenB" || got[0].GetKeyAuthorization() != "tokenB.thumb" {
		t.Errorf("change adding a challenge: %v", changes[0])
	}
	if got := changes[1].GetRemovedAcmeChallenges(); changes[1].GetRevision() != revDel || len(got) != 1 || got[0] != "tokenA" {
		t.Errorf("change removing a challenge: %v", changes[1])
	}
	snap, _ = c.Snapshot()
	if got := snap.GetAcmeChallenges(); len(got) != 1 || got[0].GetToken() != "tokenB" {
		t.Errorf("later snapshot's challenges: %v", got)
	}
}
