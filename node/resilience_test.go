package node_test

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// traffic sends requests through the edge every few milliseconds until
// stopped (bounded: at most 5000 requests), counting failures.
type traffic struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	lastErr  atomic.Value
}

func startTraffic(t *testing.T, e *edge, host, path, want string) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	cl := &http.Client{Timeout: 10 * time.Second}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		for i := 0; i < 5000; i++ {
			select {
			case <-tr.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			req, _ := http.NewRequest("GET", "http://"+e.node.HTTPAddr()+path, nil)
			req.Host = host
			resp, err := cl.Do(req)
			if err != nil {
				tr.fail.Add(1)
				tr.lastErr.Store(err.Error())
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != want {
				tr.lastErr.Store(fmt.Sprintf("%d %q", resp.StatusCode, b))
				tr.fail.Add(1)
				continue
			}
			tr.ok.Add(1)
		}
	}()
	t.Cleanup(tr.halt)
	return tr
}

func (tr *traffic) halt() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
}

// TestControllerAndEtcdRestartUnderTraffic stops the controller and its
// etcd while requests flow: the node keeps serving its config, then
// resumes the stream and applies changes made after the restart.
func TestControllerAndEtcdRestartUnderTraffic(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	tr := startTraffic(t, e, "www.example.com", "/whoami.txt", "origin vhost a\n")
	time.Sleep(200 * time.Millisecond)
	e.env.Restart(t, func() {
		// Down for a while: the node must serve on its own.
		time.Sleep(1500 * time.Millisecond)
	})
	time.Sleep(300 * time.Millisecond)
	tr.halt()
	e.c = e.env.Clients(t, e.adminToken)
	// The stream resumes: a change made now reaches the node.
	e.setSNI(t, "www.example.com", "b.origin.test")
	if tr.fail.Load() != 0 || tr.ok.Load() < 100 {
		t.Fatalf("%d failed and %d good requests across the restart; last failure: %v", tr.fail.Load(), tr.ok.Load(), tr.lastErr.Load())
	}
	if _, body := e.get(t, "GET", "www.example.com", "/whoami.txt"); body != "origin vhost b\n" {
		t.Fatalf("after the restart the change did not apply: %q", body)
	}
	eventually(t, "the node to show connected again", func() bool {
		g, err := e.c.Nodes.GetNode(ctxT(t), &outpostv1.GetNodeRequest{Name: "edge-1"})
		return err == nil && g.GetNode().GetHealth() == outpostv1.NodeHealth_NODE_HEALTH_CONNECTED
	})
}

// TestCompactionForcesResync compacts etcd while the controller is down,
// past the revision the node has: the node gets a full snapshot, never a
// partial history.
func TestCompactionForcesResync(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.addDomain(t, "old.example.com", "a.origin.test")
	e.node.Close()
	// Changes the node does not see: a removal and an addition, then a compaction.
	ctx := ctxT(t)
	if _, err := e.c.Domains.DeleteDomain(ctx, &outpostv1.DeleteDomainRequest{Name: "old.example.com"}); err != nil {
		t.Fatal(err)
	}
	e.addDomainNoSync(t, "new.example.com")
	rev, err := e.env.Controller.Store().Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.env.Controller.Store().Client().Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	e.node = startNode(t, e.env, e.nodeToken, nodeOpts{dataDir: e.nodeDir})
	e.sync(t)
	if r, _ := e.get(t, "GET", "old.example.com", "/whoami.txt"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("removed domain still served after resync: %d", r.StatusCode)
	}
	if r, _ := e.get(t, "GET", "new.example.com", "/whoami.txt"); r.StatusCode != http.StatusOK {
		t.Fatalf("new domain not served after resync: %d", r.StatusCode)
	}
}
