package scheduler_test

import (
	"context"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/miekg/dns"

	"github.com/outpost-cdn/outpost/internal/membership"
	"github.com/outpost-cdn/outpost/scheduler"
)

// suspicionTimeout is memberlist's (util.go, v0.7.0): how long a suspected
// member of a cluster of n has to refute the suspicion before it is
// declared dead, once another member confirmed it.
func suspicionTimeout(suspicionMult, n int, interval time.Duration) time.Duration {
	nodeScale := math.Max(1.0, math.Log10(math.Max(1.0, float64(n))))
	return time.Duration(suspicionMult) * time.Duration(nodeScale*1000) * interval / 1000
}

// suspicionWatch is a slog handler that records when any member first
// logged memberlist's "Suspect <name> has failed" for a member: the start
// of the suspicion timeout.
type suspicionWatch struct {
	mu    sync.Mutex
	name  string
	first time.Time
}

func (w *suspicionWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *suspicionWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *suspicionWatch) WithGroup(string) slog.Handler            { return w }
func (w *suspicionWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.name != "" && w.first.IsZero() && strings.Contains(r.Message, "Suspect "+w.name+" has failed") {
		w.first = time.Now()
	}
	return nil
}

func (w *suspicionWatch) watch(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.name = name
}

func (w *suspicionWatch) since() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first, !w.first.IsZero()
}

// TestSchedulerDropsKilledNode: an edge that crashes (stops gossiping
// without leaving) is no longer answered within memberlist's suspicion
// timeout plus a second.
func TestSchedulerDropsKilledNode(t *testing.T) {
	watch := &suspicionWatch{}
	c := startClusterLog(t, 2, clusterEdges, slog.New(watch))
	const client = "10.1.2.3" // east
	names := func() []string {
		r, err := c.resolve(client)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, cand := range r.GetCandidates() {
			out = append(out, cand.GetNode())
		}
		return out
	}
	if got := names(); !slices.Equal(got, []string{"edge-east", "edge-west", "edge-eu"}) {
		t.Fatalf("before: %v", got)
	}

	// The bound: memberlist's suspicion timeout plus a second, counted from
	// the first suspicion, as memberlist logs it. The suspicion timer only
	// starts when a probe of the crashed member failed, which takes up to a
	// probe round (each member probes one other per probe interval, in
	// turn) and the probe's deadline, before anyone could know anything.
	//
	// The cluster has 4 members, all on memberlist's local-network timings
	// (the edges with Fast, the scheduler with -gossip-local): 3 × 1 s. The
	// scheduler hears of the death from the gossip; membership retransmits
	// broadcasts at least 4 × log10(n+1) times, so the news reaches it
	// (with memberlist's local default of 2, it sometimes missed it and
	// waited for its own, longer, timer: 11 s in 2 of 60 runs). A suspected
	// member is still answered: memberlist reports it alive until declared
	// dead.
	const members = 4
	lc := memberlist.DefaultLocalConfig()
	bound := suspicionTimeout(lc.SuspicionMult, members, lc.ProbeInterval) + time.Second

	watch.watch("edge-east")
	killed := time.Now()
	c.kill(0) // edge-east, the east client's first node
	for {
		got := names()
		if !slices.Contains(got, "edge-east") {
			dropped := time.Now()
			suspected, ok := watch.since()
			if !ok {
				t.Fatal("killed node dropped, but no member logged memberlist's suspicion of it")
			}
			t.Logf("killed node suspected after %v, dropped %v after the suspicion (bound %v), %v after the kill",
				suspected.Sub(killed).Round(time.Millisecond), dropped.Sub(suspected).Round(time.Millisecond), bound, dropped.Sub(killed).Round(time.Millisecond))
			if d := dropped.Sub(suspected); d > bound {
				t.Fatalf("killed node dropped %v after memberlist suspected it, over the bound %v (known gossip-layer gap, see the comment on the bound)", d, bound)
			}
			if !slices.Equal(got, []string{"edge-west", "edge-eu"}) {
				t.Fatalf("after the kill: %v, want the two live edges", got)
			}
			break
		}
		if suspected, ok := watch.since(); ok && time.Since(suspected) > bound {
			t.Fatalf("killed node still answered %v after memberlist suspected it (known gossip-layer gap, see the comment on the bound): %v", bound, got)
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("killed node never suspected nor dropped: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// It stays out, of gRPC and of DNS answers.
	for range 10 {
		if got := names(); slices.Contains(got, "edge-east") {
			t.Fatalf("killed node answered again: %v", got)
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(c.cname), dns.TypeA)
		m.SetEdns0(1232, false).IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("10.1.2.0").To4()}}
		r, _ := exchange(t, "udp", c.s.DNSAddr(), m)
		if len(r.Answer) != 2 || r.Answer[0].(*dns.A).A.String() != "127.0.1.2" || r.Answer[1].(*dns.A).A.String() != "127.0.1.3" {
			t.Fatalf("DNS after the kill: %v", r.Answer)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadGossipKeysFailStart: a gossip key of the wrong size stops the
// scheduler at start.
func TestBadGossipKeysFailStart(t *testing.T) {
	_, err := scheduler.Start(context.Background(), scheduler.Config{GRPCAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0",
		Gossip: membership.Options{Addr: "127.0.0.1:0", Keys: [][]byte{[]byte("too short")}}})
	if err == nil || !strings.Contains(err.Error(), "gossip key 1") {
		t.Fatalf("start with a 9-byte gossip key: %v", err)
	}
}
