package node_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// refresh creates a refresh task and waits until every node applied it.
func (e *edge) refresh(t testing.TB, typ outpostv1.RefreshType, entries ...string) *outpostv1.Task {
	t.Helper()
	resp, err := e.c.Content.RefreshObjects(ctxT(t), &outpostv1.RefreshObjectsRequest{Type: typ, Entries: entries})
	if err != nil {
		t.Fatal(err)
	}
	return e.waitTask(t, resp.GetTask().GetId())
}

func (e *edge) waitTask(t testing.TB, id string) *outpostv1.Task {
	t.Helper()
	var task *outpostv1.Task
	eventually(t, "task "+id+" to complete", func() bool {
		g, err := e.c.Content.GetTask(ctxT(t), &outpostv1.GetTaskRequest{Id: id})
		if err != nil {
			return false
		}
		task = g.GetTask()
		return task.GetStatus() == outpostv1.TaskStatus_TASK_STATUS_COMPLETE || task.GetStatus() == outpostv1.TaskStatus_TASK_STATUS_FAILED
	})
	return task
}

func TestRefresh(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	const host = "www.example.com"
	paths := []string{"/c/max-age/f.txt", "/c/max-age/f.txt?v=1", "/c/max-age/d/a.txt", "/c/max-age/d/sub/b.txt", "/c/max-age/other.txt", "/c/max-age/img/x.png", "/c/max-age/img/y.jpg"}
	for _, p := range paths {
		e.origin.Write(t, stripQuery(p), []byte("v1 "+p))
	}
	warm := func() {
		for _, p := range paths {
			e.req(t, "GET", host, p)
			if r, _ := e.req(t, "GET", host, p); r.Header.Get("X-Cache") != "HIT" {
				t.Fatalf("%s not cached", p)
			}
		}
	}
	xcache := func(p string) string {
		r, _ := e.req(t, "GET", host, p)
		return r.Header.Get("X-Cache")
	}
	warm()
	// A URL with a port purges the same object: cache keys carry no port.
	task := e.refresh(t, outpostv1.RefreshType_REFRESH_TYPE_FILE, "http://www.example.com:8080/c/max-age/f.txt")
	if task.GetNodesTotal() != 1 || task.GetNodesDone() != 1 {
		t.Fatalf("task progress %d/%d", task.GetNodesDone(), task.GetNodesTotal())
	}
	if xcache("/c/max-age/f.txt") != "MISS" || xcache("/c/max-age/f.txt?v=1") != "HIT" || xcache("/c/max-age/other.txt") != "HIT" {
		t.Fatal("file refresh removed the wrong entries")
	}
	e.refresh(t, outpostv1.RefreshType_REFRESH_TYPE_IGNORE_PARAMS, "https://www.example.com/c/max-age/f.txt?x=y")
	if xcache("/c/max-age/f.txt?v=1") != "MISS" {
		t.Fatal("ignore-params refresh kept a variant with a query")
	}
	e.refresh(t, outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY, "http://www.example.com/c/max-age/d/")
	if xcache("/c/max-age/d/a.txt") != "MISS" || xcache("/c/max-age/d/sub/b.txt") != "MISS" || xcache("/c/max-age/other.txt") != "HIT" {
		t.Fatal("directory refresh did not remove exactly the directory")
	}
	e.refresh(t, outpostv1.RefreshType_REFRESH_TYPE_REGEX, `http://www.example.com/c/max-age/img/.*\.png$`)
	if xcache("/c/max-age/img/x.png") != "MISS" || xcache("/c/max-age/img/y.jpg") != "HIT" {
		t.Fatal("regex refresh did not remove exactly the matches")
	}
}

// TestFillStartedBeforeAPurgeDoesNotStore: a slow fill is in flight when a
// purge for its URL arrives; what it fetched must not be stored.
func TestFillStartedBeforeAPurgeDoesNotStore(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	body := bytes.Repeat([]byte("s"), 600<<10) // three seconds at 200 KB/s
	e.origin.Write(t, "/c/slow/s.bin", body)
	done := make(chan *http.Response, 1)
	go func() {
		r, _ := e.req(t, "GET", "www.example.com", "/c/slow/s.bin")
		done <- r
	}()
	time.Sleep(500 * time.Millisecond)
	e.refresh(t, outpostv1.RefreshType_REFRESH_TYPE_FILE, "http://www.example.com/c/slow/s.bin")
	if r := <-done; r.StatusCode != 200 {
		t.Fatalf("the client of the purged fill got %d", r.StatusCode)
	}
	if r, _ := e.req(t, "HEAD", "www.example.com", "/c/slow/s.bin"); r.Header.Get("X-Cache") == "HIT" {
		t.Fatal("a fill that started before the purge stored its response")
	}
}

func TestPrefetch(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.origin.Write(t, "/c/max-age/p1.txt", []byte("p1"))
	e.origin.Write(t, "/c/max-age/p2.txt", []byte("p2"))
	resp, err := e.c.Content.PrefetchObjects(ctxT(t), &outpostv1.PrefetchObjectsRequest{Urls: []string{
		"http://www.example.com/c/max-age/p1.txt", "https://www.example.com/c/max-age/p2.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	task := e.waitTask(t, resp.GetTask().GetId())
	if task.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_COMPLETE || task.GetNodesDone() != 1 {
		t.Fatalf("prefetch task %v", task)
	}
	for _, p := range []string{"/c/max-age/p1.txt", "/c/max-age/p2.txt"} {
		if r, _ := e.req(t, "GET", "www.example.com", p); r.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("%s not warmed: %s", p, r.Header.Get("X-Cache"))
		}
	}
}

func stripQuery(p string) string {
	for i := range p {
		if p[i] == '?' {
			return p[:i]
		}
	}
	return p
}

// TestTaskProgressAcrossThreeNodes: a refresh and a prefetch report
// progress per node, as in the dev cluster.
func TestTaskProgressAcrossThreeNodes(t *testing.T) {
	e := newEdge(t)
	for i := 2; i <= 3; i++ {
		startNode(t, e.env, "", nodeOpts{name: fmt.Sprintf("edge-%d", i)})
	}
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.origin.Write(t, "/c/max-age/three.txt", []byte("three"))
	eventually(t, "three connected nodes", func() bool {
		l, err := e.c.Nodes.ListNodes(ctxT(t), &outpostv1.ListNodesRequest{})
		if err != nil {
			return false
		}
		n := 0
		for _, nd := range l.GetNodes() {
			if nd.GetHealth() == outpostv1.NodeHealth_NODE_HEALTH_CONNECTED {
				n++
			}
		}
		return n == 3
	})
	task := e.refresh(t, outpostv1.RefreshType_REFRESH_TYPE_FILE, "http://www.example.com/c/max-age/three.txt")
	if task.GetNodesTotal() != 3 || task.GetNodesDone() != 3 {
		t.Fatalf("refresh progress %d/%d", task.GetNodesDone(), task.GetNodesTotal())
	}
	resp, err := e.c.Content.PrefetchObjects(ctxT(t), &outpostv1.PrefetchObjectsRequest{Urls: []string{"http://www.example.com/c/max-age/three.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	task = e.waitTask(t, resp.GetTask().GetId())
	if task.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_COMPLETE || task.GetNodesTotal() != 3 || task.GetNodesDone() != 3 {
		t.Fatalf("prefetch progress %v %d/%d", task.GetStatus(), task.GetNodesDone(), task.GetNodesTotal())
	}
	// Three nodes warmed one URL: the origin saw three requests, one per node.
	if n := e.origin.Count(t, "/c/max-age/three.txt"); n != 3 {
		t.Fatalf("origin saw %d requests", n)
	}
}
