package node_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/membership"
	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func gossipKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// member starts a bare gossip member, as a scheduler would be, with keys.
func member(t *testing.T, name string, keys [][]byte, join ...string) *membership.Member {
	t.Helper()
	m, err := membership.Start(membership.Config{Name: name, BindAddr: "127.0.0.1:0", Keys: keys, Label: "outpost", Fast: true, Join: join,
		Meta:   func() membership.Meta { return membership.Meta{Role: membership.RoleScheduler} },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func gossipPeer(m *membership.Member, name string) (membership.Peer, bool) {
	for _, p := range m.Peers() {
		if p.Name == name && p.Alive {
			return p, true
		}
	}
	return membership.Peer{}, false
}

// TestNodeGossipFollowsTheController: a node without a keyring file of its
// own gossips with the controller's keyring, follows a rotation without a
// restart, and gossips its drain state.
func TestNodeGossipFollowsTheController(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	op := env.Clients(t, env.OperatorToken)
	k1, k2 := gossipKey(t), gossipKey(t)
	setKeys := func(keys ...[]byte) int64 {
		t.Helper()
		resp, err := op.Nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetRevision()
	}
	rev := setKeys(k1)
	// The node's first config must carry the keyring: wait until the
	// controller's config cache has it (current_revision).
	eventually(t, "the controller to stream the keyring", func() bool {
		l, err := op.Nodes.ListNodes(ctx, &outpostv1.ListNodesRequest{})
		return err == nil && l.GetCurrentRevision() >= rev
	})
	watcher := member(t, "watcher", [][]byte{k1})

	n, err := node.Start(context.Background(), node.Config{
		Name: "edge-g", Region: "test", Controllers: []string{env.Addr}, JoinToken: env.JoinToken(t),
		HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Gossip: membership.Options{Addr: "127.0.0.1:0", Join: []string{watcher.Addr()}, Label: "outpost"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// Only a member with the controller's key sees the node.
	eventually(t, "the watcher (key 1) to see the node", func() bool { _, ok := gossipPeer(watcher, "edge-g"); return ok })

	if _, err := op.Nodes.DrainNode(ctx, &outpostv1.DrainNodeRequest{Name: "edge-g", Draining: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node to gossip that it is draining", func() bool { p, ok := gossipPeer(watcher, "edge-g"); return ok && p.Meta.Draining })
	if _, err := op.Nodes.DrainNode(ctx, &outpostv1.DrainNodeRequest{Name: "edge-g"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node to gossip that it is back", func() bool { p, ok := gossipPeer(watcher, "edge-g"); return ok && !p.Meta.Draining })

	// Rotate as documented: [k1 k2], then [k2 k1]. The node applies each
	// step without a restart; the watcher follows too, so nobody flaps.
	rev = setKeys(k1, k2)
	eventually(t, "the node to apply [k1 k2]", func() bool { return n.Revision() >= rev })
	if err := watcher.SetKeys([][]byte{k1, k2}); err != nil {
		t.Fatal(err)
	}
	rev = setKeys(k2, k1)
	eventually(t, "the node to apply [k2 k1]", func() bool { return n.Revision() >= rev })
	// A member that knows only the new key joins the node: the node
	// encrypts with k2 now.
	late := member(t, "late", [][]byte{k2}, n.GossipAddr())
	eventually(t, "a member with only key 2 to see the node", func() bool { _, ok := gossipPeer(late, "edge-g"); return ok })
	if _, ok := gossipPeer(watcher, "edge-g"); !ok {
		t.Fatal("the watcher lost the node during the rotation")
	}
}

// freeGossipAddr returns a loopback address whose port is free for TCP and
// UDP now.
func freeGossipAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free gossip port")
	return ""
}

// TestNodesJoinThroughControllerSeeds: nodes given no join addresses find
// each other through the controller, which hands each new subscriber the
// gossip addresses of the nodes connected now.
func TestNodesJoinThroughControllerSeeds(t *testing.T) {
	env := controllertest.Start(t)
	start := func(name string) *node.Node {
		t.Helper()
		n, err := node.Start(context.Background(), node.Config{
			Name: name, Region: "test", Controllers: []string{env.Addr}, JoinToken: env.JoinToken(t),
			HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", DataDir: t.TempDir(),
			Gossip: membership.Options{Addr: freeGossipAddr(t), Label: "outpost", Local: true},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		return n
	}
	sees := func(n *node.Node, name string) bool {
		for _, p := range n.Peers() {
			if p.Name == name && p.Alive {
				return true
			}
		}
		return false
	}
	a := start("edge-a")
	op := env.Clients(t, env.OperatorToken)
	eventually(t, "edge-a to connect", func() bool {
		l, err := op.Nodes.ListNodes(ctxT(t), &outpostv1.ListNodesRequest{})
		return err == nil && len(l.GetNodes()) == 1 && l.GetNodes()[0].GetHealth() == outpostv1.NodeHealth_NODE_HEALTH_CONNECTED
	})
	b := start("edge-b")
	eventually(t, "edge-b to join edge-a through the controller's seeds", func() bool { return sees(b, "edge-a") && sees(a, "edge-b") })
}

// TestBadGossipKeysFailStart: a gossip key of the wrong size stops the node
// at start, before it binds or dials anything.
func TestBadGossipKeysFailStart(t *testing.T) {
	_, err := node.Start(context.Background(), node.Config{Name: "edge-bad", HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Gossip: membership.Options{Addr: "127.0.0.1:0", Keys: [][]byte{[]byte("too short")}}})
	if err == nil || !strings.Contains(err.Error(), "gossip key 1") {
		t.Fatalf("start with a 9-byte gossip key: %v", err)
	}
}
