//go:build e2e

package compose

// The fault tests of issue 8: each breaks part of the running topology
// under load from outpost-loadtest's engine, measures one number, logs it
// as a "fault: ..." line, asserts the bound, and repairs what it
// broke (t.Cleanup) so that the next test starts from a whole topology
// (ensureUp). docs/deployment.md#fault-tests describes them.

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The bounds.
const (
	killEdgeBound = 5 * time.Second  // a killed edge leaves the schedulers' answers
	convergeBound = 5 * time.Second  // nodes at the latest revision after a heal or recovery
	outage        = 60 * time.Second // how long a node is cut off, or etcd and controllers are down
	gossipRejoin  = 60 * time.Second // one membership view after a gossip partition heals
)

// gossipReapTime is how long memberlist keeps a dead member before
// forgetting it (GossipToTheDeadTime): 15 s with the local-network
// timings, 30 s with the LAN ones.
func gossipReapTime() time.Duration {
	if topo.gossipLocal == "true" {
		return 15 * time.Second
	}
	return 30 * time.Second
}

// TestFaultKillEdge kills an edge node (SIGKILL: no graceful leave) and
// measures how long both schedulers keep answering it, over gRPC Resolve
// and DNS.
func TestFaultKillEdge(t *testing.T) {
	ensureUp(t)
	sc := newSchedClients(t)
	l := startLoad(t)
	const victim = "edge-us-2" // not published: the load goes to the region's first edge
	victimIP := topo.ip("2.12")
	t.Cleanup(func() { compose("start", victim) })

	docker(t, "kill", victim)
	killed := time.Now()
	// Every way a client learns edges: Resolve and DNS, on both schedulers.
	gone := map[string]time.Duration{}
	checks := map[string]func() (bool, error){}
	for _, s := range schedulers {
		checks[s+" Resolve"] = func() (bool, error) {
			v, err := sc.view(s)
			return slices.Contains(v, victim), err
		}
	}
	dnsServers := map[string]string{"scheduler-1": "127.0.0.1:" + topo.dnsPort, "scheduler-2": topo.ip(controlIP["scheduler-2"]) + ":53"}
	for s, addr := range dnsServers {
		checks[s+" DNS"] = func() (bool, error) {
			ips, err := resolveAt(addr, "198.51.100.0/24")
			return slices.Contains(ips, victimIP), err
		}
	}
	waitFor(t, victim+" out of every scheduler answer", 60*time.Second, 100*time.Millisecond, func() error {
		var still []string
		for name, f := range checks {
			if _, ok := gone[name]; ok {
				continue
			}
			present, err := f()
			if err != nil {
				return err
			}
			if present {
				still = append(still, name)
			} else {
				gone[name] = time.Since(killed)
			}
		}
		if len(still) > 0 {
			return fmt.Errorf("still answered by %v", still)
		}
		return nil
	})
	var worst time.Duration
	for name, d := range gone {
		t.Logf("%s: %s gone after %s", name, victim, secs(d))
		worst = max(worst, d)
	}

	docker(t, "start", victim)
	waitFor(t, victim+" back in the schedulers' answers", 90*time.Second, 500*time.Millisecond, func() error {
		return sc.allSee(edges)
	})
	res, failed := l.stopNoFailures(t)
	summary(t, "kill-edge: %s removed from both schedulers' answers (gRPC and DNS) %s after SIGKILL (bound %s); load %d requests, %d failed",
		victim, secs(worst), secs(killEdgeBound), res.Requests, failed)
	if worst > killEdgeBound {
		t.Errorf("%s left the answers after %s, want at most %s", victim, secs(worst), secs(killEdgeBound))
	}
}

// TestFaultNodeCutOff drops every packet between an edge node and both
// controllers for 60 s while a config change is made, then heals: the
// node keeps serving from its last good config, and must apply the change
// within 5 s of the heal.
func TestFaultNodeCutOff(t *testing.T) {
	ensureUp(t)
	op := operator(t)
	const victim = "edge-eu-1" // published: a third of the load goes to it
	l := startLoad(t)
	f := &netFault{}
	t.Cleanup(func() { f.heal(t) })

	f.drop(t, victim, controllers...)
	cut := time.Now()
	time.Sleep(3 * time.Second)
	rev := configWrite(t, demoAdmin(t), fmt.Sprintf("cut-%d", cut.Unix()))
	others := slices.DeleteFunc(slices.Clone(edges), func(e string) bool { return e == victim })
	waitFor(t, "the other nodes at the new revision", 30*time.Second, 200*time.Millisecond, func() error {
		resp, err := op.listNodes()
		if err != nil {
			return err
		}
		return checkNodesAt(resp, others, rev)
	})
	time.Sleep(time.Until(cut.Add(outage)))
	// The cut must have held: the node cannot have the change yet.
	resp, err := op.listNodes()
	if err != nil {
		t.Fatal(err)
	}
	if checkNodesAt(resp, []string{victim}, rev) == nil {
		t.Fatalf("%s applied revision %d while cut off: the cut did not hold", victim, rev)
	}

	healed := time.Now() // measured from the first rule's removal
	f.heal(t)
	t.Logf("rules removed in %s", secs(time.Since(healed)))
	waitFor(t, victim+" at the latest revision after the heal", 120*time.Second, 100*time.Millisecond, func() error {
		return op.nodesAt(rev)
	})
	took := time.Since(healed)
	res, failed := l.stopNoFailures(t)
	summary(t, "node-cut-off: %s cut from both controllers for %s kept serving (%d of its requests, %d failed of %d in all); at revision %d %s after the heal (bound %s)",
		victim, secs(healed.Sub(cut)), res.Nodes[victim], failed, res.Requests, rev, secs(took), secs(convergeBound))
	if res.Nodes[victim] == 0 {
		t.Errorf("%s served none of the load", victim)
	}
	if took > convergeBound {
		t.Errorf("%s reached revision %d %s after the heal, want at most %s", victim, rev, secs(took), secs(convergeBound))
	}
}

// TestFaultControlPlaneDown stops every etcd member and every controller
// for 60 s: edges serve on, from their last good config. After the
// restart, a config change is made as soon as the controllers answer, and
// every node must have it within 5 s of that moment.
func TestFaultControlPlaneDown(t *testing.T) {
	ensureUp(t)
	op := operator(t)
	l := startLoad(t)
	plane := slices.Concat(controllers, etcdMembers)
	t.Cleanup(func() { compose(slices.Concat([]string{"start"}, etcdMembers, controllers)...) })

	docker(t, "stop", plane...)
	down := time.Now()
	if _, err := op.listNodes(); err == nil {
		t.Fatal("a controller answers with every controller stopped")
	}
	time.Sleep(time.Until(down.Add(outage)))

	docker(t, "start", etcdMembers...)
	docker(t, "start", controllers...)
	started := time.Now()
	answer := waitFor(t, "a controller answering", 120*time.Second, 100*time.Millisecond, func() error {
		_, err := op.listNodes()
		return err
	})
	recovered := time.Now()
	rev := configWrite(t, demoAdmin(t), fmt.Sprintf("down-%d", down.Unix()))
	wrote := time.Since(recovered)
	waitFor(t, "every node at the latest revision", 120*time.Second, 100*time.Millisecond, func() error {
		return op.nodesAt(rev)
	})
	took := time.Since(recovered)
	res, failed := l.stopNoFailures(t)
	summary(t, "control-plane-down: etcd x3 and controllers x2 stopped for %s: %d edge requests, %d failed; controllers answered %s after the restart; a change made then (%s) reached every node %s after they answered (bound %s)",
		secs(started.Sub(down)), res.Requests, failed, secs(answer), secs(wrote), secs(took), secs(convergeBound))
	if took > convergeBound {
		t.Errorf("every node at revision %d %s after recovery, want at most %s", rev, secs(took), secs(convergeBound))
	}
}

// write is one admin write of TestFaultEtcdLeaderKill.
type write struct {
	id, controller string
	sent, done     time.Time
	err            error
}

// TestFaultEtcdLeaderKill kills the etcd leader while admin writes (new
// accounts) go to both controllers, then reads every acknowledged write
// back: none may be lost, and both controllers must acknowledge writes
// again after the election.
func TestFaultEtcdLeaderKill(t *testing.T) {
	ensureUp(t)
	op := operator(t)
	l := startLoad(t)
	leader, err := etcdLeader(etcdMembers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { compose("start", leader) })

	const (
		before   = 5 * time.Second  // writes before the kill
		after    = 20 * time.Second // and after it
		maxWrite = 400
	)
	run := time.Now().Unix()
	var (
		mu     sync.Mutex
		writes []write
		killed time.Time
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		end := time.Now().Add(before + after + 10*time.Second) // bound, should the kill be late
		for i := 0; i < maxWrite && time.Now().Before(end); i++ {
			mu.Lock()
			k := killed
			mu.Unlock()
			if !k.IsZero() && time.Since(k) > after {
				break
			}
			w := write{id: fmt.Sprintf("fault-%d-%03d", run, i), controller: controllers[i%len(controllers)], sent: time.Now()}
			ctx, cancel := rpcCtx(5 * time.Second)
			_, w.err = outpostv1.NewAccountServiceClient(op.conns[w.controller]).CreateAccount(ctx, &outpostv1.CreateAccountRequest{Id: w.id, DomainQuota: 1})
			cancel()
			w.done = time.Now()
			mu.Lock()
			writes = append(writes, w)
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	time.Sleep(before)
	docker(t, "kill", leader)
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	<-done

	var acked, failedW []write
	firstAfter := map[string]time.Time{}
	for _, w := range writes {
		if w.err != nil {
			failedW = append(failedW, w)
			continue
		}
		acked = append(acked, w)
		if _, ok := firstAfter[w.controller]; !ok && !w.sent.Before(killed) {
			firstAfter[w.controller] = w.done
		}
	}
	newLeader, err := etcdLeader(slices.DeleteFunc(slices.Clone(etcdMembers), func(m string) bool { return m == leader }))
	if err != nil {
		t.Errorf("no leader among the other members: %v", err)
	}

	// Every acknowledged write must be there, read through each controller.
	var lost []string
	for i, w := range acked {
		c := controllers[i%len(controllers)]
		ctx, cancel := rpcCtx(5 * time.Second)
		_, err := outpostv1.NewAccountServiceClient(op.conns[c]).GetAccount(ctx, &outpostv1.GetAccountRequest{Id: w.id})
		cancel()
		if err != nil {
			lost = append(lost, fmt.Sprintf("%s (%v)", w.id, err))
		}
	}
	// Unacknowledged writes may or may not have been applied (the
	// client cannot tell); count those that were, for the log.
	landed := 0
	for _, w := range failedW {
		ctx, cancel := rpcCtx(5 * time.Second)
		if _, err := outpostv1.NewAccountServiceClient(op.conns["controller-1"]).GetAccount(ctx, &outpostv1.GetAccountRequest{Id: w.id}); err == nil {
			landed++
		}
		cancel()
		t.Logf("unacknowledged write %s to %s at +%s: %v", w.id, w.controller, secs(w.sent.Sub(killed)), w.err)
	}
	var resumed []string
	for _, c := range controllers {
		if at, ok := firstAfter[c]; ok {
			resumed = append(resumed, fmt.Sprintf("%s after %s", c, secs(at.Sub(killed))))
		} else {
			t.Errorf("%s acknowledged no write after the leader was killed", c)
		}
	}
	// The longest wait between two acknowledgements: the election's cost
	// as the admin API's clients see it.
	var gap time.Duration
	for i := 1; i < len(acked); i++ {
		gap = max(gap, acked[i].done.Sub(acked[i-1].done))
	}
	res, failed := l.stopNoFailures(t)
	summary(t, "etcd-leader-kill: killed %s, new leader %s; %d writes, %d acknowledged, %d lost (bound 0), %d refused (%d of them applied all the same); writes acknowledged again by %s; longest gap between acknowledgements %s; load %d requests, %d failed",
		leader, newLeader, len(writes), len(acked), len(lost), len(failedW), landed, strings.Join(resumed, ", "), secs(gap), res.Requests, failed)
	if len(acked) == 0 {
		t.Error("no write was acknowledged")
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(lost), lost)
	}
}

// TestFaultControllerRollingRestart restarts the controllers one at a time
// (SIGTERM, then start). After each restart a config change must reach
// every node, which proves that their streams moved or came back, before
// the next controller goes. The edges must not fail a request.
func TestFaultControllerRollingRestart(t *testing.T) {
	ensureUp(t)
	op := operator(t)
	adm := demoAdmin(t)
	l := startLoad(t)
	t.Cleanup(func() { compose(slices.Concat([]string{"start"}, controllers)...) })
	start := time.Now()
	var steps []string
	for _, c := range controllers {
		t0 := time.Now()
		run(t, "docker", "restart", "-t", "10", container(t, c))
		waitFor(t, c+" answering", 90*time.Second, 200*time.Millisecond, func() error {
			ctx, cancel := rpcCtx(3 * time.Second)
			defer cancel()
			_, err := outpostv1.NewNodeServiceClient(op.conns[c]).ListNodes(ctx, &outpostv1.ListNodesRequest{})
			return err
		})
		rev := configWrite(t, adm, fmt.Sprintf("restart-%s-%d", c, start.Unix()))
		took := waitFor(t, "every node at the change made after restarting "+c, 90*time.Second, 100*time.Millisecond, func() error {
			return op.nodesAt(rev)
		})
		steps = append(steps, fmt.Sprintf("%s answered %s after the restart began, a change then reached every node in %s", c, secs(time.Since(t0)-took), secs(took)))
	}
	res, failed := l.stopNoFailures(t)
	summary(t, "controller-restart: %s restarted one by one in %s (%s): %d edge requests, %d failed (bound 0)",
		strings.Join(controllers, " and "), secs(time.Since(start)), strings.Join(steps, "; "), res.Requests, failed)
}

// TestFaultGossipPartition splits gossip in two (each scheduler with three
// edges) for longer than memberlist's dead-node reap time, so that each
// side forgets the other, then heals: both schedulers must answer all six
// edges again within 60 s.
func TestFaultGossipPartition(t *testing.T) {
	ensureUp(t)
	sc := newSchedClients(t)
	l := startLoad(t)
	sideA := []string{"scheduler-1", "edge-eu-1", "edge-eu-2", "edge-us-1"}
	sideB := []string{"scheduler-2", "edge-us-2", "edge-ap-1", "edge-ap-2"}
	f := &netFault{}
	t.Cleanup(func() { f.heal(t) })

	// Rules in side A's namespaces cut both directions.
	for _, a := range sideA {
		f.drop(t, a, sideB...)
	}
	split := time.Now()
	edgesOf := func(side []string) []string {
		return slices.DeleteFunc(slices.Clone(side), func(s string) bool { return strings.HasPrefix(s, "scheduler") })
	}
	seen := waitFor(t, "each scheduler answering its own side only", 90*time.Second, 250*time.Millisecond, func() error {
		for sched, side := range map[string][]string{"scheduler-1": sideA, "scheduler-2": sideB} {
			got, err := sc.view(sched)
			if err != nil {
				return err
			}
			if want := slices.Sorted(slices.Values(edgesOf(side))); !slices.Equal(got, want) {
				return fmt.Errorf("%s answers %v, want %v", sched, got, want)
			}
		}
		return nil
	})
	t.Logf("two views %s after the split", secs(seen))
	// Dead members are reaped gossipReapTime after being declared dead:
	// hold the partition past that, with a margin, and check that it
	// holds.
	last := map[string]string{}
	for hold := time.Now().Add(gossipReapTime() + 15*time.Second); time.Now().Before(hold); time.Sleep(time.Second) {
		for _, sched := range schedulers {
			got, err := sc.view(sched)
			if v := fmt.Sprint(got, err); v != last[sched] {
				t.Logf("+%s %s answers %s", secs(time.Since(split)), sched, v)
				last[sched] = v
			}
		}
	}
	for sched, side := range map[string][]string{"scheduler-1": sideA, "scheduler-2": sideB} {
		if got, err := sc.view(sched); err != nil || !slices.Equal(got, slices.Sorted(slices.Values(edgesOf(side)))) {
			t.Fatalf("the partition did not hold: %s answers %v (%v)", sched, got, err)
		}
	}

	healed := time.Now() // measured from the first rule's removal
	f.heal(t)
	t.Logf("rules removed in %s", secs(time.Since(healed)))
	waitFor(t, "one membership view after the heal", 3*time.Minute, 250*time.Millisecond, func() error {
		return sc.allSee(edges)
	})
	took := time.Since(healed)
	res, failed := l.stopNoFailures(t)
	summary(t, "gossip-partition: split 4/4 for %s (two views after %s, reap time %s): one view (both schedulers answer all 6 edges) %s after the heal (bound %s); load %d requests, %d failed",
		secs(healed.Sub(split)), secs(seen), secs(gossipReapTime()), secs(took), secs(gossipRejoin), res.Requests, failed)
	if took > gossipRejoin {
		t.Errorf("one view %s after the heal, want at most %s", secs(took), secs(gossipRejoin))
	}
}
