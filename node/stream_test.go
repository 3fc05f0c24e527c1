package node_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/controller"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestStreamAppliesConfigAndReportsIt(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	n := startNode(t, env, env.JoinToken(t), nodeOpts{})

	d, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}})
	if err != nil {
		t.Fatal(err)
	}
	rev := d.GetDomain().GetRevision()
	eventually(t, "the node to apply the domain", func() bool { return n.Revision() >= rev })
	eventually(t, "the domain to turn online", func() bool {
		g, err := c.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: "www.example.com"})
		return err == nil && g.GetDomain().GetStatus() == outpostv1.DomainStatus_DOMAIN_STATUS_ONLINE
	})
	nodes, err := c.Nodes.ListNodes(ctx, &outpostv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.GetNodes()) != 1 {
		t.Fatalf("nodes %v", nodes)
	}
	got := nodes.GetNodes()[0]
	if got.GetName() != "edge-1" || got.GetHealth() != outpostv1.NodeHealth_NODE_HEALTH_CONNECTED || got.GetAppliedRevision() < rev || got.GetHttpsAddress() == "" {
		t.Fatalf("node %v", got)
	}
	if nodes.GetCurrentRevision() < rev {
		t.Fatalf("current revision %d < %d", nodes.GetCurrentRevision(), rev)
	}

	// A change made after the snapshot arrives as a delta.
	dis, err := c.Domains.DisableDomain(ctx, &outpostv1.DisableDomainRequest{Name: "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node to apply the change", func() bool { return n.Revision() >= dis.GetDomain().GetRevision() })

	// Closing the node ends its session: it shows disconnected.
	n.Close()
	eventually(t, "the node to show disconnected", func() bool {
		g, err := c.Nodes.GetNode(ctx, &outpostv1.GetNodeRequest{Name: "edge-1"})
		return err == nil && g.GetNode().GetHealth() == outpostv1.NodeHealth_NODE_HEALTH_DISCONNECTED
	})
}

func TestNodeNacksABadConfigAndKeepsTheLastGood(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	n := startNode(t, env, env.JoinToken(t), nodeOpts{})
	d, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "good.example.com", Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}})
	if err != nil {
		t.Fatal(err)
	}
	good := d.GetDomain().GetRevision()
	eventually(t, "the good config", func() bool { return n.Revision() >= good })

	// Bypass the API's validation: a domain whose HTTPS certificate does not exist.
	bad := &outpostv1.Domain{Name: "bad.example.com", Account: "acme", Status: outpostv1.DomainStatus_DOMAIN_STATUS_CONFIGURING,
		Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}, Https: &outpostv1.HttpsSettings{Enabled: true, CertificateId: "cert-missing"}}
	b, err := store.Encode(bad)
	if err != nil {
		t.Fatal(err)
	}
	put, err := env.Controller.Store().Client().Put(ctx, store.DomainKey("bad.example.com"), string(b))
	if err != nil {
		t.Fatal(err)
	}
	badRev := put.Header.Revision
	eventually(t, "the NACK to be recorded", func() bool {
		g, err := c.Nodes.GetNode(ctx, &outpostv1.GetNodeRequest{Name: "edge-1"})
		return err == nil && g.GetNode().GetLastNack().GetRevision() == badRev
	})
	g, _ := c.Nodes.GetNode(ctx, &outpostv1.GetNodeRequest{Name: "edge-1"})
	if g.GetNode().GetLastNack().GetError() == "" || g.GetNode().GetAppliedRevision() >= badRev {
		t.Fatalf("node after NACK: %v", g.GetNode())
	}
	if n.Revision() != good {
		t.Fatalf("node serves revision %d, want the last good %d", n.Revision(), good)
	}

	// Fixing the config (removing the bad domain) is applied again.
	del, err := env.Controller.Store().Client().Delete(ctx, store.DomainKey("bad.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fixed config", func() bool { return n.Revision() >= del.Header.Revision })
}

func TestNodeServesPersistedConfigWithNoController(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	dir := t.TempDir()
	token := env.JoinToken(t)
	n := startNode(t, env, token, nodeOpts{dataDir: dir})
	d, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}})
	if err != nil {
		t.Fatal(err)
	}
	rev := d.GetDomain().GetRevision()
	eventually(t, "the node to apply", func() bool { return n.Revision() >= rev })
	n.Close()
	env.Controller.Close()

	// Restarted with no reachable controller, it serves the persisted config at once.
	n2 := startNode(t, nil, token, nodeOpts{dataDir: dir, controllers: []string{env.Addr}})
	if n2.Revision() < rev {
		t.Fatalf("restarted node serves revision %d, want %d", n2.Revision(), rev)
	}
}

// TestRevokedNodeIsCutOff: revoking a node ends its open config stream
// (it stops receiving config, and with it private keys), and it cannot
// come back with its certificate.
func TestRevokedNodeIsCutOff(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) { c.TokenRecheck = 50 * time.Millisecond })
	ctx := ctxT(t)
	n := startNode(t, env, "", nodeOpts{})
	op := env.Clients(t, env.OperatorToken)
	eventually(t, "the node to connect", func() bool {
		g, err := op.Nodes.GetNode(ctx, &outpostv1.GetNodeRequest{Name: "edge-1"})
		return err == nil && g.GetNode().GetHealth() == outpostv1.NodeHealth_NODE_HEALTH_CONNECTED
	})
	if _, err := op.PKI.RevokeMember(ctx, &outpostv1.RevokeMemberRequest{Name: "edge-1"}); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	eventually(t, "the revoked node to be disconnected", func() bool {
		g, err := op.Nodes.GetNode(ctx, &outpostv1.GetNodeRequest{Name: "edge-1"})
		return err == nil && g.GetNode().GetHealth() == outpostv1.NodeHealth_NODE_HEALTH_DISCONNECTED
	})
	if d := time.Since(revoked); d > 5*time.Second {
		t.Fatalf("the revoked node was cut off after %s", d)
	}
	// It keeps trying, and stays out.
	time.Sleep(500 * time.Millisecond)
	g, err := op.Nodes.GetNode(ctx, &outpostv1.GetNodeRequest{Name: "edge-1"})
	if err != nil || g.GetNode().GetHealth() != outpostv1.NodeHealth_NODE_HEALTH_DISCONNECTED {
		t.Fatalf("revoked node: %v %v", g, err)
	}
	if n.MemberCertificate() == nil {
		t.Fatal("no member certificate")
	}
}

// TestNodeRenewsItsCertificate: with a short certificate lifetime the
// node renews before expiry, on its open stream, and keeps receiving
// config; its key and certificate are on disk with mode 0600.
func TestNodeRenewsItsCertificate(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) {
		c.MemberCertTTL = 3 * time.Second
		c.TokenRecheck = 100 * time.Millisecond
	})
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	dir := t.TempDir()
	n := startNode(t, env, "", nodeOpts{dataDir: dir})
	eventually(t, "the node to join", func() bool { return n.MemberCertificate() != nil })
	first := n.MemberCertificate()
	eventually(t, "a renewal", func() bool {
		c := n.MemberCertificate()
		return c.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	renewed := n.MemberCertificate()
	if !renewed.NotBefore.Before(first.NotAfter) || time.Now().After(first.NotAfter) {
		t.Fatalf("renewed at %s, the first certificate expires %s", time.Now(), first.NotAfter)
	}
	// Past several lifetimes, config still flows.
	for i := range 3 {
		d, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: fmt.Sprintf("www%d.example.com", i), Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}})
		if err != nil {
			t.Fatal(err)
		}
		rev := d.GetDomain().GetRevision()
		eventually(t, "the node to apply", func() bool { return n.Revision() >= rev })
		time.Sleep(2 * time.Second)
	}
	for _, f := range []string{"member.key", "member.crt", "ca.crt"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", f, st.Mode().Perm())
		}
	}
}
