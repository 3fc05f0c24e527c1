package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// errMetadata returns the ErrorInfo metadata of an RPC error.
func errMetadata(err error) map[string]string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetMetadata()
		}
	}
	return nil
}

// eventually polls cond until it holds or five seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeNode is an edge node played by the test over a real config stream.
type fakeNode struct {
	t      *testing.T
	name   string
	stream outpostv1.ConfigDiscoveryService_StreamConfigClient
	msgs   chan *outpostv1.StreamConfigResponse
	errs   chan error
}

// connectNode opens a config stream as node name of region, subscribing
// with lastApplied. The stream ends at the end of the test.
// connectNode joins as edge node name (a new join token, a certificate kept
// in memory) and subscribes to the config stream over mutual TLS.
func connectNode(t *testing.T, env *controllertest.Env, name, region string, lastApplied int64) *fakeNode {
	t.Helper()
	env.SyncConfig(t) // the snapshot holds every write made before
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := env.NodeClients(t, name).Config.StreamConfig(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	n := &fakeNode{t: t, name: name, stream: stream, msgs: make(chan *outpostv1.StreamConfigResponse, 100), errs: make(chan error, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := stream.Recv()
			if err != nil {
				n.errs <- err
				return
			}
			n.msgs <- msg
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	n.send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Subscribe{Subscribe: &outpostv1.Subscribe{
		Node: &outpostv1.NodeInfo{Name: name, Region: region, Version: "test"}, LastAppliedRevision: lastApplied,
	}}})
	return n
}

func (n *fakeNode) send(req *outpostv1.StreamConfigRequest) {
	n.t.Helper()
	if err := n.stream.Send(req); err != nil {
		n.t.Fatalf("%s: send: %v", n.name, err)
	}
}

// next returns the next message from the controller.
func (n *fakeNode) next() *outpostv1.StreamConfigResponse {
	n.t.Helper()
	select {
	case msg := <-n.msgs:
		return msg
	case err := <-n.errs:
		n.t.Fatalf("%s: stream ended: %v", n.name, err)
	case <-time.After(10 * time.Second):
		n.t.Fatalf("%s: no config message in 10s", n.name)
	}
	return nil
}

// until reads messages until one satisfies cond and returns it.
func (n *fakeNode) until(what string, cond func(*outpostv1.StreamConfigResponse) bool) *outpostv1.StreamConfigResponse {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if msg := n.next(); cond(msg) {
			return msg
		}
	}
	n.t.Fatalf("%s: no message with %s", n.name, what)
	return nil
}

func (n *fakeNode) ack(rev int64) {
	n.t.Helper()
	n.send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Ack{Ack: &outpostv1.Ack{Revision: rev}}})
}

func (n *fakeNode) report(r *outpostv1.TaskReport) {
	n.t.Helper()
	n.send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_TaskReport{TaskReport: r}})
}

// join reads a node's snapshot, ACKs it and waits until the controllers
// count the node as connected.
func (n *fakeNode) join(op *controllertest.Clients) *outpostv1.StreamConfigResponse {
	n.t.Helper()
	snap := n.next()
	if !snap.GetSnapshot() {
		n.t.Fatalf("%s: first message is not a snapshot: %v", n.name, snap)
	}
	n.ack(snap.GetRevision())
	eventually(n.t, n.name+" connected", func() bool {
		resp, err := op.Nodes.GetNode(context.Background(), &outpostv1.GetNodeRequest{Name: n.name})
		return err == nil && resp.GetNode().GetHealth() == outpostv1.NodeHealth_NODE_HEALTH_CONNECTED
	})
	return snap
}

func purgeOf(msg *outpostv1.StreamConfigResponse, taskID string) *outpostv1.Purge {
	for _, p := range msg.GetPurges() {
		if p.GetTaskId() == taskID {
			return p
		}
	}
	return nil
}

func prefetchOf(msg *outpostv1.StreamConfigResponse, taskID string) *outpostv1.Prefetch {
	for _, p := range msg.GetPrefetches() {
		if p.GetTaskId() == taskID {
			return p
		}
	}
	return nil
}

func countKeys(t *testing.T, env *controllertest.Env, prefixes ...string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, p := range prefixes {
		n, err := env.Controller.Store().Count(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = n
	}
	return out
}

func refreshReq(typ outpostv1.RefreshType, entries ...string) *outpostv1.RefreshObjectsRequest {
	return &outpostv1.RefreshObjectsRequest{Type: typ, Entries: entries}
}

const (
	fileType   = outpostv1.RefreshType_REFRESH_TYPE_FILE
	dirType    = outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY
	regexType  = outpostv1.RefreshType_REFRESH_TYPE_REGEX
	ignoreType = outpostv1.RefreshType_REFRESH_TYPE_IGNORE_PARAMS
)

func urls(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

func TestContentValidation(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) {
		// Room for the requests at the per-request limits.
		c.RefreshDirectoryQuota, c.RefreshRegexQuota = 1000, 1000
	})
	admin, readOnly := env.NewAccount(t, "acme")
	otherAdmin, _ := env.NewAccount(t, "other")
	c, ro, other := env.Clients(t, admin), env.Clients(t, readOnly), env.Clients(t, otherAdmin)
	ctx := ctxT(t)
	for _, d := range []string{"www.example.com", "*.img.example.com"} {
		if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: d, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "other.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}

	t.Run("refused", func(t *testing.T) {
		stored := []string{store.TasksPrefix(), store.PurgesPrefix(), store.PrefetchesPrefix(), store.QuotaUsagesPrefix()}
		before := countKeys(t, env, stored...)
		for _, tc := range []struct {
			name   string
			req    *outpostv1.RefreshObjectsRequest
			reason string
		}{
			{"no type", refreshReq(0, "https://www.example.com/a"), "InvalidRefreshType"},
			{"unknown type", refreshReq(99, "https://www.example.com/a"), "InvalidRefreshType"},
			{"no entries", refreshReq(fileType), "NoEntries"},
			{"1001 files", refreshReq(fileType, urls(1001, "https://www.example.com/%d")...), "TooManyEntries"},
			{"1001 ignore-params", refreshReq(ignoreType, urls(1001, "https://www.example.com/%d")...), "TooManyEntries"},
			{"101 directories", refreshReq(dirType, urls(101, "https://www.example.com/%d/")...), "TooManyEntries"},
			{"21 regexes", refreshReq(regexType, urls(21, "https://www.example.com/%d.*")...), "TooManyEntries"},
			{"no scheme", refreshReq(fileType, "www.example.com/a"), "InvalidUrl"},
			{"relative", refreshReq(fileType, "/a"), "InvalidUrl"},
			{"ftp", refreshReq(fileType, "ftp://www.example.com/a"), "InvalidUrl"},
			{"no path", refreshReq(fileType, "https://www.example.com"), "InvalidUrl"},
			{"query without path", refreshReq(fileType, "https://www.example.com?a=1"), "InvalidUrl"},
			{"no host", refreshReq(fileType, "https:///a"), "InvalidUrl"},
			{"user info", refreshReq(fileType, "https://user@www.example.com/a"), "InvalidUrl"},
			{"IPv6 host", refreshReq(fileType, "https://[2001:db8::1]/a"), "InvalidUrl"},
			{"IPv4 host", refreshReq(fileType, "https://192.0.2.1/a"), "InvalidUrl"},
			{"bad host", refreshReq(fileType, "https://bad_host.example.com/a"), "InvalidUrl"},
			{"port 0", refreshReq(fileType, "https://www.example.com:0/a"), "InvalidUrl"},
			{"port too big", refreshReq(fileType, "https://www.example.com:65536/a"), "InvalidUrl"},
			{"port not a number", refreshReq(fileType, "https://www.example.com:https/a"), "InvalidUrl"},
			{"empty port", refreshReq(fileType, "https://www.example.com:/a"), "InvalidUrl"},
			{"space", refreshReq(fileType, "https://www.example.com/a b"), "InvalidUrl"},
			{"leading space", refreshReq(fileType, " https://www.example.com/a"), "InvalidUrl"},
			{"control", refreshReq(fileType, "https://www.example.com/a\x7f"), "InvalidUrl"},
			{"non-ASCII", refreshReq(fileType, "https://www.example.com/é"), "InvalidUrl"},
			{"fragment", refreshReq(fileType, "https://www.example.com/a#top"), "InvalidUrl"},
			{"too long", refreshReq(fileType, "https://www.example.com/"+strings.Repeat("a", 4096)), "InvalidUrl"},
			{"one bad among good", refreshReq(fileType, "https://www.example.com/a", "https://www.example.com"), "InvalidUrl"},
			{"directory without slash", refreshReq(dirType, "https://www.example.com/dir"), "InvalidUrl"},
			{"directory with query", refreshReq(dirType, "https://www.example.com/dir/?a=1"), "InvalidUrl"},
			{"regex without path", refreshReq(regexType, "https://www.example.com"), "InvalidUrl"},
			{"regex on an IP", refreshReq(regexType, "https://192.0.2.1/.*"), "InvalidUrl"},
			{"bad regex", refreshReq(regexType, "https://www.example.com/img/(.*"), "InvalidRegex"},
			{"backreference", refreshReq(regexType, `https://www.example.com/(a)\1`), "InvalidRegex"},
			{"huge repeat", refreshReq(regexType, "https://www.example.com/a{2000}"), "InvalidRegex"},
			{"long regex", refreshReq(regexType, "https://www.example.com/"+strings.Repeat("a", 1024)), "InvalidRegex"},
			{"other account's domain", refreshReq(fileType, "https://other.example.com/a"), "UrlDomainNotOwned"},
			{"unknown domain", refreshReq(fileType, "https://nobody.example.com/a"), "UrlDomainNotOwned"},
			{"wildcard's parent", refreshReq(fileType, "https://img.example.com/a"), "UrlDomainNotOwned"},
			{"two labels under a wildcard", refreshReq(fileType, "https://a.b.img.example.com/a"), "UrlDomainNotOwned"},
			{"owned and not owned", refreshReq(dirType, "https://www.example.com/", "https://other.example.com/"), "UrlDomainNotOwned"},
			{"regex on another account's host", refreshReq(regexType, "https://other.example.com/.*"), "UrlDomainNotOwned"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := c.Content.RefreshObjects(ctx, tc.req)
				wantErr(t, err, codes.InvalidArgument, tc.reason)
				if tc.reason == "UrlDomainNotOwned" {
					if h := errMetadata(err)["host"]; h == "" || h == "www.example.com" {
						t.Fatalf("metadata %v does not name the refused host", errMetadata(err))
					}
				}
			})
		}
		for _, tc := range []struct {
			name   string
			req    *outpostv1.PrefetchObjectsRequest
			reason string
		}{
			{"no URLs", &outpostv1.PrefetchObjectsRequest{}, "NoEntries"},
			{"101 URLs", &outpostv1.PrefetchObjectsRequest{Urls: urls(101, "https://www.example.com/%d")}, "TooManyEntries"},
			{"no path", &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com"}}, "InvalidUrl"},
			{"ftp", &outpostv1.PrefetchObjectsRequest{Urls: []string{"ftp://www.example.com/a"}}, "InvalidUrl"},
			{"fragment", &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com/a#b"}}, "InvalidUrl"},
			{"long region", &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com/a"}, Region: strings.Repeat("r", 65)}, "InvalidRegion"},
			{"region with a space", &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com/a"}, Region: "eu west"}, "InvalidRegion"},
			{"non-ASCII region", &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com/a"}, Region: "européen"}, "InvalidRegion"},
			{"other account's domain", &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://other.example.com/a"}}, "UrlDomainNotOwned"},
		} {
			t.Run("prefetch "+tc.name, func(t *testing.T) {
				_, err := c.Content.PrefetchObjects(ctx, tc.req)
				wantErr(t, err, codes.InvalidArgument, tc.reason)
			})
		}
		_, err := ro.Content.RefreshObjects(ctx, refreshReq(fileType, "https://www.example.com/a"))
		wantErr(t, err, codes.PermissionDenied, "ReadOnlyToken")
		_, err = ro.Content.PrefetchObjects(ctx, &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com/a"}})
		wantErr(t, err, codes.PermissionDenied, "ReadOnlyToken")
		// The other account's own domain is fine for it, and not for acme.
		if _, err := other.Content.RefreshObjects(ctx, refreshReq(fileType, "https://other.example.com/a")); err != nil {
			t.Fatal(err)
		}
		before[store.TasksPrefix()]++
		before[store.PurgesPrefix()]++
		before[store.QuotaUsagesPrefix()]++
		if after := countKeys(t, env, stored...); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("refused requests stored something: %v → %v", before, after)
		}
	})

	t.Run("normalised", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  *outpostv1.RefreshObjectsRequest
			want []string
		}{
			{"scheme, host and default ports", refreshReq(fileType,
				"HTTPS://WWW.Example.COM:443/A.js?Q=1", "http://www.example.com:80/a", "http://www.example.com:443/a",
				"https://www.example.com:08443/a", "https://www.example.com./a"),
				[]string{"https://www.example.com/A.js?Q=1", "http://www.example.com/a", "http://www.example.com:443/a",
					"https://www.example.com:8443/a", "https://www.example.com/a"}},
			{"duplicates", refreshReq(fileType, "https://www.example.com/a", "https://WWW.example.com/a"), []string{"https://www.example.com/a"}},
			{"wildcard domain", refreshReq(fileType, "https://x.img.example.com/a.png"), []string{"https://x.img.example.com/a.png"}},
			{"ignore-params", refreshReq(ignoreType, "https://www.example.com/a.js?v=2", "https://www.example.com/b.js"),
				[]string{"https://www.example.com/a.js", "https://www.example.com/b.js"}},
			{"directory", refreshReq(dirType, "https://www.example.com/", "https://www.example.com/img/"),
				[]string{"https://www.example.com/", "https://www.example.com/img/"}},
			{"regex", refreshReq(regexType, `https://www.example.com/img/.*\.(jpg|png)\?v=[0-9]+$`, "https://www.example.com:443/a#?"),
				[]string{`https://www.example.com/img/.*\.(jpg|png)\?v=[0-9]+$`, "https://www.example.com/a#?"}},
			{"1000 files", refreshReq(fileType, urls(1000, "https://www.example.com/%d")...), urls(1000, "https://www.example.com/%d")},
			{"100 directories", refreshReq(dirType, urls(100, "https://www.example.com/%d/")...), urls(100, "https://www.example.com/%d/")},
			{"20 regexes", refreshReq(regexType, urls(20, "https://www.example.com/%d.*")...), urls(20, "https://www.example.com/%d.*")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, err := c.Content.RefreshObjects(ctx, tc.req)
				if err != nil {
					t.Fatal(err)
				}
				task := resp.GetTask()
				if !slices.Equal(task.GetEntries(), tc.want) {
					t.Fatalf("entries %q, want %q", task.GetEntries(), tc.want)
				}
				if task.GetKind() != outpostv1.TaskKind_TASK_KIND_REFRESH || task.GetRefreshType() != tc.req.GetType() || task.GetAccount() != "acme" ||
					task.GetRevision() == 0 || task.GetCreateTime() == nil {
					t.Fatalf("task %v", task)
				}
				// No node is connected: nothing to wait for.
				if task.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_COMPLETE || task.GetNodesTotal() != 0 {
					t.Fatalf("status %v with %d nodes", task.GetStatus(), task.GetNodesTotal())
				}
				p := &outpostv1.Purge{}
				if _, found, err := env.Controller.Store().Get(ctx, store.PurgeKey(task.GetId()), p); err != nil || !found {
					t.Fatalf("purge of %s: %v %v", task.GetId(), found, err)
				}
				if p.GetTaskId() != task.GetId() || p.GetType() != tc.req.GetType() || !slices.Equal(p.GetEntries(), tc.want) || p.GetRevision() != 0 {
					t.Fatalf("stored purge %v", p)
				}
			})
		}
		resp, err := c.Content.PrefetchObjects(ctx, &outpostv1.PrefetchObjectsRequest{Urls: []string{"HTTP://www.example.com:80/a?b=1"}, Region: "eu-west"})
		if err != nil {
			t.Fatal(err)
		}
		task := resp.GetTask()
		if task.GetKind() != outpostv1.TaskKind_TASK_KIND_PREFETCH || task.GetRegion() != "eu-west" || !slices.Equal(task.GetEntries(), []string{"http://www.example.com/a?b=1"}) {
			t.Fatalf("prefetch task %v", task)
		}
		p := &outpostv1.Prefetch{}
		if _, found, err := env.Controller.Store().Get(ctx, store.PrefetchKey(task.GetId()), p); err != nil || !found ||
			p.GetRegion() != "eu-west" || !slices.Equal(p.GetUrls(), task.GetEntries()) {
			t.Fatalf("stored prefetch %v %v %v", p, found, err)
		}
	})

	t.Run("tasks", func(t *testing.T) {
		var ids []string
		for _, u := range []string{"https://www.example.com/1", "https://www.example.com/2", "https://www.example.com/3"} {
			resp, err := c.Content.RefreshObjects(ctx, refreshReq(fileType, u))
			if err != nil {
				t.Fatal(err)
			}
			id := resp.GetTask().GetId()
			if len(id) != len("task-0123456789abcdef-0123") || !strings.HasPrefix(id, "task-") {
				t.Fatalf("task ID %q", id)
			}
			ids = append(ids, id)
		}
		if !slices.IsSorted(ids) {
			t.Fatalf("task IDs do not sort by creation: %v", ids)
		}
		got, err := ro.Content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: ids[0]})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetTask().GetId() != ids[0] || got.GetTask().GetEntries()[0] != "https://www.example.com/1" {
			t.Fatalf("get %v", got.GetTask())
		}
		for _, id := range []string{"task-1", "", "../accounts/acme", ids[0] + "x"} {
			_, err := c.Content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: id})
			wantErr(t, err, codes.NotFound, "TaskNotFound")
		}
		_, err = other.Content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: ids[0]})
		wantErr(t, err, codes.NotFound, "TaskNotFound")

		// Newest first, in pages.
		var listed []string
		token := ""
		for pages := 0; ; pages++ {
			resp, err := ro.Content.ListTasks(ctx, &outpostv1.ListTasksRequest{PageSize: 2, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetTasks()) > 2 {
				t.Fatalf("page of %d", len(resp.GetTasks()))
			}
			for _, task := range resp.GetTasks() {
				listed = append(listed, task.GetId())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if !slices.IsSortedFunc(listed, func(a, b string) int { return strings.Compare(b, a) }) || !slices.Equal(listed[:3], []string{ids[2], ids[1], ids[0]}) {
			t.Fatalf("listed %v", listed[:3])
		}
		all, err := c.Content.ListTasks(ctx, &outpostv1.ListTasksRequest{})
		if err != nil || len(all.GetTasks()) != len(listed) || all.GetNextPageToken() != "" {
			t.Fatalf("one page of %d, want %d: %v", len(all.GetTasks()), len(listed), err)
		}
		others, err := other.Content.ListTasks(ctx, &outpostv1.ListTasksRequest{})
		if err != nil || len(others.GetTasks()) != 1 || others.GetTasks()[0].GetAccount() != "other" {
			t.Fatalf("other account lists %v %v", others.GetTasks(), err)
		}
		_, err = c.Content.ListTasks(ctx, &outpostv1.ListTasksRequest{PageToken: "bm90LWEta2V5"})
		wantErr(t, err, codes.InvalidArgument, "InvalidPageToken")
	})
}

func TestContentQuotas(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) {
		c.RefreshURLQuota, c.RefreshDirectoryQuota, c.RefreshRegexQuota, c.PrefetchURLQuota = 5, 2, 1, 3
	})
	admin, _ := env.NewAccount(t, "acme")
	c, op := env.Clients(t, admin), env.Clients(t, env.OperatorToken)
	ctx := ctxT(t)
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	refresh := func(typ outpostv1.RefreshType, n int) error {
		format := "https://www.example.com/%d"
		if typ == dirType {
			format += "/"
		}
		_, err := c.Content.RefreshObjects(ctx, refreshReq(typ, urls(n, format)...))
		return err
	}
	prefetch := func(n int) error {
		_, err := c.Content.PrefetchObjects(ctx, &outpostv1.PrefetchObjectsRequest{Urls: urls(n, "https://www.example.com/p%d")})
		return err
	}
	exceeded := func(err error, remaining int) {
		t.Helper()
		wantErr(t, err, codes.ResourceExhausted, "ContentQuotaExceeded")
		if got := errMetadata(err)["remaining"]; got != strconv.Itoa(remaining) {
			t.Fatalf("remaining %q, want %d", got, remaining)
		}
	}

	if err := refresh(fileType, 3); err != nil {
		t.Fatal(err)
	}
	exceeded(refresh(fileType, 3), 2)
	if err := refresh(ignoreType, 2); err != nil { // ignore-params entries are URLs too
		t.Fatal(err)
	}
	exceeded(refresh(fileType, 1), 0)
	exceeded(refresh(ignoreType, 1), 0)
	if err := refresh(dirType, 2); err != nil {
		t.Fatal(err)
	}
	exceeded(refresh(dirType, 1), 0)
	if err := refresh(regexType, 1); err != nil {
		t.Fatal(err)
	}
	exceeded(refresh(regexType, 1), 0)
	exceeded(prefetch(4), 3)
	if err := prefetch(3); err != nil {
		t.Fatal(err)
	}
	exceeded(prefetch(1), 0)

	// The usage record counts what was accepted.
	usage := &storagev1.ContentQuotaUsage{}
	day := time.Now().UTC().Format("2006-01-02")
	if _, found, err := env.Controller.Store().Get(ctx, store.QuotaUsageKey("acme", day), usage); err != nil || !found {
		t.Fatalf("usage %v %v", found, err)
	}
	if usage.GetRefreshUrls() != 5 || usage.GetRefreshDirectories() != 2 || usage.GetRefreshRegexes() != 1 || usage.GetPrefetchUrls() != 3 {
		t.Fatalf("usage %v", usage)
	}

	// The account's own quota wins; accounts show their effective quotas.
	acct, err := c.Accounts.GetAccount(ctx, &outpostv1.GetAccountRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if q := acct.GetAccount().GetContentQuota(); q.GetRefreshUrls() != 5 || q.GetRefreshDirectories() != 2 || q.GetRefreshRegexes() != 1 || q.GetPrefetchUrls() != 3 {
		t.Fatalf("effective quota %v", q)
	}
	set, err := op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "acme", DomainQuota: 7, ContentQuota: &outpostv1.ContentQuota{RefreshUrls: 8}})
	if err != nil {
		t.Fatal(err)
	}
	if a := set.GetAccount(); a.GetDomainQuota() != 7 || a.GetContentQuota().GetRefreshUrls() != 8 || a.GetContentQuota().GetPrefetchUrls() != 3 {
		t.Fatalf("after set: %v", a)
	}
	if err := refresh(fileType, 3); err != nil {
		t.Fatal(err)
	}
	exceeded(refresh(fileType, 1), 0)

	// A mask changes only what it names.
	set, err = op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "acme",
		ContentQuota: &outpostv1.ContentQuota{PrefetchUrls: 10}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"content_quota.prefetch_urls"}}})
	if err != nil {
		t.Fatal(err)
	}
	if a := set.GetAccount(); a.GetDomainQuota() != 7 || a.GetContentQuota().GetRefreshUrls() != 8 || a.GetContentQuota().GetPrefetchUrls() != 10 {
		t.Fatalf("after masked set: %v", a)
	}
	if err := prefetch(7); err != nil {
		t.Fatal(err)
	}
	// Setting the domain quota alone keeps the content quota.
	set, err = op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "acme", DomainQuota: 9})
	if err != nil || set.GetAccount().GetContentQuota().GetRefreshUrls() != 8 {
		t.Fatalf("domain quota only: %v %v", set.GetAccount(), err)
	}
	_, err = op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "acme", UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
	wantErr(t, err, codes.InvalidArgument, "InvalidUpdateMask")
	_, err = op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "acme", ContentQuota: &outpostv1.ContentQuota{RefreshUrls: 1_000_000_000}})
	wantErr(t, err, codes.InvalidArgument, "InvalidArgument")
	// An empty content quota restores the defaults.
	set, err = op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "acme", DomainQuota: 9, ContentQuota: &outpostv1.ContentQuota{}})
	if err != nil || set.GetAccount().GetContentQuota().GetRefreshUrls() != 5 || set.GetAccount().GetContentQuota().GetPrefetchUrls() != 3 {
		t.Fatalf("defaults restored: %v %v", set.GetAccount(), err)
	}
	stored := &outpostv1.Account{}
	if _, _, err := env.Controller.Store().Get(ctx, store.AccountKey("acme"), stored); err != nil || stored.GetContentQuota() != nil {
		t.Fatalf("stored account keeps a content quota of defaults: %v %v", stored, err)
	}
	_, err = c.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "acme", ContentQuota: &outpostv1.ContentQuota{RefreshUrls: 100}})
	wantErr(t, err, codes.PermissionDenied, "OperatorOnly")

	t.Run("two controllers race", func(t *testing.T) {
		peer := env.StartPeer(t)
		racer, _ := env.NewAccount(t, "racer")
		clients := []*controllertest.Clients{env.Clients(t, racer), peer.Clients(t, racer)}
		if _, err := clients[0].Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "race.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
			t.Fatal(err)
		}
		const quota = 5 // RefreshURLQuota
		var wg sync.WaitGroup
		errs := make([]error, 16)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = clients[i%2].Content.RefreshObjects(ctx, refreshReq(fileType, fmt.Sprintf("https://race.example.com/%d", i)))
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case status.Code(err) == codes.ResourceExhausted && errMetadata(err)["remaining"] == "0",
				status.Code(err) == codes.Aborted:
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		t.Logf("%d of %d racing refreshes accepted", ok, len(errs))
		if ok == 0 || ok > quota {
			t.Fatalf("%d refreshes of one URL accepted with a quota of %d", ok, quota)
		}
		usage := &storagev1.ContentQuotaUsage{}
		if _, _, err := env.Controller.Store().Get(ctx, store.QuotaUsageKey("racer", time.Now().UTC().Format("2006-01-02")), usage); err != nil {
			t.Fatal(err)
		}
		tasks, err := clients[1].Content.ListTasks(ctx, &outpostv1.ListTasksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if int(usage.GetRefreshUrls()) != ok || len(tasks.GetTasks()) != ok {
			t.Fatalf("%d accepted, usage %d, %d tasks", ok, usage.GetRefreshUrls(), len(tasks.GetTasks()))
		}
	})
}

// TestTaskProgress follows refresh and prefetch tasks to two edge nodes
// played by the test on real config streams.
func TestTaskProgress(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	c, ro, op := env.Clients(t, admin), env.Clients(t, readOnly), env.Clients(t, env.OperatorToken)
	ctx := ctxT(t)
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	eu := connectNode(t, env, "edge-eu", "eu", 0)
	us := connectNode(t, env, "edge-us", "us", 0)
	eu.join(op)
	us.join(op)
	var refreshID string
	getTask := func(id string) *outpostv1.Task {
		t.Helper()
		resp, err := ro.Content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetTask()
	}
	waitTask := func(id string, st outpostv1.TaskStatus, done uint32) *outpostv1.Task {
		t.Helper()
		var task *outpostv1.Task
		eventually(t, fmt.Sprintf("task %s %v with %d done", id, st, done), func() bool {
			task = getTask(id)
			return task.GetStatus() == st && task.GetNodesDone() == done
		})
		return task
	}

	// Refresh: PENDING until a node ACKs the revision carrying the purge.
	{
		resp, err := c.Content.RefreshObjects(ctx, refreshReq(dirType, "https://www.example.com/img/"))
		if err != nil {
			t.Fatal(err)
		}
		task := resp.GetTask()
		if task.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_PENDING || task.GetNodesTotal() != 2 || task.GetNodesDone() != 0 {
			t.Fatalf("new task %v", task)
		}
		var revs []int64
		for _, n := range []*fakeNode{eu, us} {
			msg := n.until("the purge", func(m *outpostv1.StreamConfigResponse) bool { return purgeOf(m, task.GetId()) != nil })
			p := purgeOf(msg, task.GetId())
			if msg.GetSnapshot() || msg.GetRevision() != task.GetRevision() || p.GetRevision() != task.GetRevision() ||
				p.GetType() != dirType || !slices.Equal(p.GetEntries(), []string{"https://www.example.com/img/"}) {
				t.Fatalf("%s got %v at %d for task at %d", n.name, p, msg.GetRevision(), task.GetRevision())
			}
			if msg.GetPurgeFloor() != 0 {
				t.Fatalf("a change carries purge_floor %d", msg.GetPurgeFloor())
			}
			revs = append(revs, msg.GetRevision())
		}
		if got := getTask(task.GetId()); got.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_PENDING || got.GetNodesDone() != 0 {
			t.Fatalf("before any ACK: %v", got)
		}
		// An ACK of an older revision does not count.
		eu.ack(task.GetRevision() - 1)
		eu.ack(revs[0])
		waitTask(task.GetId(), outpostv1.TaskStatus_TASK_STATUS_REFRESHING, 1)
		us.ack(revs[1])
		done := waitTask(task.GetId(), outpostv1.TaskStatus_TASK_STATUS_COMPLETE, 2)
		if done.GetCompleteTime() == nil || done.GetNodesTotal() != 2 {
			t.Fatalf("complete task %v", done)
		}

		refreshID = task.GetId()
	}

	// A node that connects later gets the retained purge in its snapshot,
	// but is not one of the task's nodes.
	late := connectNode(t, env, "edge-late", "eu", 0)
	snap := late.join(op)
	if p := purgeOf(snap, refreshID); p == nil || p.GetRevision() != getTask(refreshID).GetRevision() {
		t.Fatalf("late snapshot purges %v", snap.GetPurges())
	}
	if snap.GetPurgeFloor() != 0 {
		t.Fatalf("purge floor %d with nothing expired", snap.GetPurgeFloor())
	}
	if got := getTask(refreshID); got.GetNodesTotal() != 2 || got.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_COMPLETE {
		t.Fatalf("after a new node: %v", got)
	}
	list, err := ro.Content.ListTasks(ctx, &outpostv1.ListTasksRequest{})
	if err != nil || len(list.GetTasks()) != 1 || list.GetTasks()[0].GetStatus() != outpostv1.TaskStatus_TASK_STATUS_COMPLETE {
		t.Fatalf("list %v %v", list.GetTasks(), err)
	}
	// Newer refreshes target three nodes.
	resp, err := c.Content.RefreshObjects(ctx, refreshReq(fileType, "https://www.example.com/x"))
	if err != nil || resp.GetTask().GetNodesTotal() != 3 {
		t.Fatalf("refresh with three nodes: %v %v", resp.GetTask(), err)
	}

	// A regional prefetch: only the region's nodes count.
	{
		resp, err := c.Content.PrefetchObjects(ctx, &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com/a", "https://www.example.com/b"}, Region: "us"})
		if err != nil {
			t.Fatal(err)
		}
		task := resp.GetTask()
		if task.GetNodesTotal() != 1 || task.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_PENDING {
			t.Fatalf("regional prefetch %v", task)
		}
		msg := us.until("the prefetch", func(m *outpostv1.StreamConfigResponse) bool { return prefetchOf(m, task.GetId()) != nil })
		if p := prefetchOf(msg, task.GetId()); p.GetRegion() != "us" || len(p.GetUrls()) != 2 {
			t.Fatalf("prefetch %v", p)
		}
		us.report(&outpostv1.TaskReport{TaskId: task.GetId(), Succeeded: 1})
		time.Sleep(100 * time.Millisecond)
		if got := getTask(task.GetId()); got.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_PENDING {
			t.Fatalf("after a partial report: %v", got)
		}
		// The eu node is not a target: its report does not count.
		eu.report(&outpostv1.TaskReport{TaskId: task.GetId(), Done: true, Succeeded: 2})
		us.report(&outpostv1.TaskReport{TaskId: task.GetId(), Done: true, Succeeded: 1, Failed: 1, Error: "b: 404"})
		got := waitTask(task.GetId(), outpostv1.TaskStatus_TASK_STATUS_COMPLETE, 1)
		if got.GetCompleteTime() == nil || got.GetError() != "" {
			t.Fatalf("complete prefetch %v", got)
		}
	}

	// A prefetch that fails on every node.
	{
		resp, err := c.Content.PrefetchObjects(ctx, &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com/gone"}})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetTask().GetId()
		if resp.GetTask().GetNodesTotal() != 3 {
			t.Fatalf("prefetch to every node: %v", resp.GetTask())
		}
		eu.report(&outpostv1.TaskReport{TaskId: id, Done: true, Failed: 1, Error: "gone: 404"})
		waitTask(id, outpostv1.TaskStatus_TASK_STATUS_REFRESHING, 1)
		// Reports on unknown tasks are dropped.
		eu.report(&outpostv1.TaskReport{TaskId: "task-0000000000000001-0000", Done: true})
		eu.report(&outpostv1.TaskReport{TaskId: "../../accounts/acme", Done: true})
		time.Sleep(20 * time.Millisecond)
		us.report(&outpostv1.TaskReport{TaskId: id, Done: true, Failed: 1, Error: "gone: 404"})
		waitTask(id, outpostv1.TaskStatus_TASK_STATUS_REFRESHING, 2)
		late.report(&outpostv1.TaskReport{TaskId: id, Done: true, Failed: 1, Error: "gone: 410"})
		got := waitTask(id, outpostv1.TaskStatus_TASK_STATUS_FAILED, 3)
		if got.GetError() != "gone: 410" || got.GetCompleteTime() == nil {
			t.Fatalf("failed prefetch %v", got)
		}
		// A finished task keeps its final state.
		us.report(&outpostv1.TaskReport{TaskId: id, Done: false})
		time.Sleep(100 * time.Millisecond)
		if again := getTask(id); again.GetStatus() != outpostv1.TaskStatus_TASK_STATUS_FAILED || again.GetNodesDone() != 3 {
			t.Fatalf("finished task changed: %v", again)
		}
		reports, _, err := env.Controller.Store().Range(ctx, store.TaskProgressesPrefix(), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range reports {
			if !strings.Contains(kv.Key, "task-") || strings.Contains(kv.Key, "task-0000000000000001") || strings.Contains(kv.Key, "accounts") {
				t.Fatalf("report stored at %s", kv.Key)
			}
		}
		if n, err := env.Controller.Store().Count(ctx, store.TaskProgressPrefix(id)); err != nil || n != 3 {
			t.Fatalf("%d reports on %s: %v", n, id, err)
		}
	}
}

// TestTaskRetention runs the retention loop with a short retention: tasks
// go with their purges, prefetches, progress and old quota usage, and the
// purge floor rises to the newest deleted purge, which new snapshots carry.
func TestTaskRetention(t *testing.T) {
	const retention = time.Second
	env := controllertest.Start(t, func(c *controller.Config) {
		c.TaskRetention = retention
		c.RetentionInterval = 100 * time.Millisecond
	})
	admin, _ := env.NewAccount(t, "acme")
	c, op := env.Clients(t, admin), env.Clients(t, env.OperatorToken)
	ctx := ctxT(t)
	st := env.Controller.Store()
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	node := connectNode(t, env, "edge-1", "eu", 0)
	node.join(op)

	r1, err := c.Content.RefreshObjects(ctx, refreshReq(fileType, "https://www.example.com/a"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Content.RefreshObjects(ctx, refreshReq(regexType, "https://www.example.com/b.*"))
	if err != nil {
		t.Fatal(err)
	}
	pf, err := c.Content.PrefetchObjects(ctx, &outpostv1.PrefetchObjectsRequest{Urls: []string{"https://www.example.com/c"}})
	if err != nil {
		t.Fatal(err)
	}
	node.until("the prefetch", func(m *outpostv1.StreamConfigResponse) bool { return prefetchOf(m, pf.GetTask().GetId()) != nil })
	node.report(&outpostv1.TaskReport{TaskId: pf.GetTask().GetId(), Done: true, Succeeded: 1})
	eventually(t, "the report", func() bool {
		n, err := st.Count(ctx, store.TaskProgressPrefix(pf.GetTask().GetId()))
		return err == nil && n == 1
	})
	// Leftovers: a report on a long-gone task, and old quota usage.
	cli := st.Client()
	for _, k := range []string{store.TaskProgressKey("task-0000000000000001-abcd", "edge-1"), store.QuotaUsageKey("acme", "2001-02-03")} {
		if _, err := cli.Put(ctx, k, "{}"); err != nil {
			t.Fatal(err)
		}
	}
	today := store.QuotaUsageKey("acme", time.Now().UTC().Format("2006-01-02"))

	_, err = c.Content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: r1.GetTask().GetId()})
	if err != nil {
		t.Fatalf("task gone before its time: %v", err)
	}
	eventually(t, "the tasks to expire", func() bool {
		n, err := st.Count(ctx, store.TasksPrefix())
		return err == nil && n == 0
	})
	for _, id := range []string{r1.GetTask().GetId(), pf.GetTask().GetId()} {
		_, err = c.Content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: id})
		wantErr(t, err, codes.NotFound, "TaskNotFound")
	}
	list, err := c.Content.ListTasks(ctx, &outpostv1.ListTasksRequest{})
	if err != nil || len(list.GetTasks()) != 0 {
		t.Fatalf("list after expiry %v %v", list.GetTasks(), err)
	}
	eventually(t, "everything else to expire", func() bool {
		counts := countKeys(t, env, store.AccountTasksPrefix("acme"), store.PurgesPrefix(), store.PrefetchesPrefix(), store.TaskProgressesPrefix(), store.QuotaUsageKey("acme", "2001-02-03"))
		for _, n := range counts {
			if n != 0 {
				return false
			}
		}
		return true
	})
	if _, found, err := st.GetRaw(ctx, today); err != nil || !found {
		t.Fatalf("today's quota usage was deleted: %v %v", found, err)
	}
	floor, found, err := st.GetRaw(ctx, store.PurgeFloorKey())
	if err != nil || !found || floor != strconv.FormatInt(r2.GetTask().GetRevision(), 10) {
		t.Fatalf("purge floor %q (%v, %v), want the newest expired purge's revision %d", floor, found, err, r2.GetTask().GetRevision())
	}

	// The connected node hears that the purges and the prefetch are gone.
	removed := map[string]bool{}
	for !removed[r1.GetTask().GetId()] || !removed[r2.GetTask().GetId()] || !removed[pf.GetTask().GetId()] {
		msg := node.next()
		if msg.GetSnapshot() || msg.GetPurgeFloor() != 0 {
			t.Fatalf("unexpected message %v", msg)
		}
		for _, id := range append(msg.GetRemovedPurges(), msg.GetRemovedPrefetches()...) {
			removed[id] = true
		}
	}
	// A node that subscribes now learns the floor from its snapshot.
	late := connectNode(t, env, "edge-2", "eu", r1.GetTask().GetRevision()-1)
	snap := late.join(op)
	if snap.GetPurgeFloor() != r2.GetTask().GetRevision() || len(snap.GetPurges()) != 0 || len(snap.GetPrefetches()) != 0 {
		t.Fatalf("snapshot floor %d, purges %v, prefetches %v", snap.GetPurgeFloor(), snap.GetPurges(), snap.GetPrefetches())
	}

	// The floor only rises: a newer purge expires and raises it again.
	r3, err := c.Content.RefreshObjects(ctx, refreshReq(fileType, "https://www.example.com/d"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the floor to rise", func() bool {
		floor, _, err := st.GetRaw(ctx, store.PurgeFloorKey())
		return err == nil && floor == strconv.FormatInt(r3.GetTask().GetRevision(), 10)
	})
}
