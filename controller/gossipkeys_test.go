package controller_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func gossipKey(t *testing.T, n int) []byte {
	t.Helper()
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGossipKeyring: an operator sets the keyring; it reaches nodes through
// the config stream (snapshot and change), is refused when malformed with
// nothing stored, is sealed at rest, and no API response or log holds a key.
func TestGossipKeyring(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	op := env.Clients(t, env.OperatorToken)
	admin, _ := env.NewAccount(t, "acme")

	k1, k2 := gossipKey(t, 32), gossipKey(t, 16)
	if resp, err := op.Nodes.GetGossipKeyring(ctx, &outpostv1.GetGossipKeyringRequest{}); err != nil || len(resp.GetFingerprints()) != 0 {
		t.Fatalf("no keyring yet: %v, %v", resp, err)
	}
	for _, bad := range [][][]byte{nil, {gossipKey(t, 20)}, {k1, k1}, make([][]byte, 9)} {
		_, err := op.Nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: bad})
		wantErr(t, err, codes.InvalidArgument, apierr.ReasonInvalidGossipKey)
	}
	// Account admins are tenants, not operators of the edge cluster.
	_, err := env.Clients(t, admin).Nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: [][]byte{k1}})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonOperatorOnly)
	if _, found, err := env.Controller.Store().GetRaw(ctx, store.GossipKeyringKey()); err != nil || found {
		t.Fatalf("refused keyrings stored: %v %v", found, err)
	}

	set, err := op.Nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: [][]byte{k1}})
	if err != nil || len(set.GetFingerprints()) != 1 || set.GetRevision() == 0 {
		t.Fatalf("set: %v, %v", set, err)
	}
	node := connectNode(t, env, "edge-1", "east", 0)
	// The controller's cache may lag the write: the keyring comes in the
	// snapshot or in a change right after it.
	first := node.until("the keyring", func(m *outpostv1.StreamConfigResponse) bool { return m.GetGossipKeyring() != nil })
	if keys := first.GetGossipKeyring().GetKeys(); len(keys) != 1 || !bytes.Equal(keys[0], k1) || first.GetRevision() < set.GetRevision() {
		t.Fatalf("keyring at %d (want ≥ %d): %d keys", first.GetRevision(), set.GetRevision(), len(keys))
	}
	node.ack(first.GetRevision())

	// A rotation step reaches the connected node as a change.
	set2, err := op.Nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: [][]byte{k1, k2}})
	if err != nil {
		t.Fatal(err)
	}
	change := node.until("the new keyring", func(m *outpostv1.StreamConfigResponse) bool { return m.GetGossipKeyring() != nil })
	if keys := change.GetGossipKeyring().GetKeys(); change.GetSnapshot() || change.GetRevision() != set2.GetRevision() ||
		len(keys) != 2 || !bytes.Equal(keys[0], k1) || !bytes.Equal(keys[1], k2) {
		t.Fatalf("change at %d (want %d): %d keys", change.GetRevision(), set2.GetRevision(), len(keys))
	}
	got, err := op.Nodes.GetGossipKeyring(ctx, &outpostv1.GetGossipKeyringRequest{})
	if err != nil || len(got.GetFingerprints()) != 2 || got.GetFingerprints()[1] != set2.GetFingerprints()[1] || got.GetRevision() != set2.GetRevision() {
		t.Fatalf("get: %v, %v", got, err)
	}

	// No key in any response, in the log, or in etcd (raw or base64).
	scan := func(where string, data []byte) {
		t.Helper()
		for _, k := range [][]byte{k1, k2} {
			if bytes.Contains(data, k) || bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(k))) {
				t.Fatalf("%s holds a gossip key", where)
			}
		}
	}
	for _, m := range []proto.Message{set, set2, got} {
		b, _ := proto.Marshal(m)
		scan("a response", b)
	}
	scan("the controller log", []byte(env.Logs.String()))
	kvs, _, err := env.Controller.Store().Range(context.Background(), store.Prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		scan("etcd "+kv.Key, kv.Value)
	}
}
