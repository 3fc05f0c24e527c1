package controller_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func ossOrigin(host string) *outpostv1.Origin {
	return &outpostv1.Origin{Type: outpostv1.OriginType_ORIGIN_TYPE_OSS, Address: host}
}

// s3Record is one record of an S3 event notification as AWS sends it.
func s3Record(eventName, bucket, key string) string {
	return fmt.Sprintf(`{
      "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
      "eventTime": "2024-05-01T12:00:00.000Z", "eventName": %q,
      "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
      "requestParameters": {"sourceIPAddress": "203.0.113.9"},
      "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
      "s3": {
        "s3SchemaVersion": "1.0", "configurationId": "outpost",
        "bucket": {"name": %q, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::%s"},
        "object": {"key": %q, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5"}
      }
    }`, eventName, bucket, bucket, key)
}

func s3Notification(records ...string) []byte {
	return []byte(`{"Records": [` + strings.Join(records, ",") + `]}`)
}

// bucketEventsClient posts to a controller's bucket-events endpoint.
type bucketEventsClient struct {
	t    *testing.T
	base string
	http *http.Client
}

func newBucketEventsClient(t *testing.T, env *controllertest.Env) *bucketEventsClient {
	t.Helper()
	addr := env.Controller.BucketEventsAddr()
	if addr == "" {
		t.Fatal("the bucket-events endpoint is off")
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &bucketEventsClient{t: t, base: "http://" + addr, http: &http.Client{Transport: tr}}
}

type bucketEventsAnswer struct {
	code   int
	header http.Header
	raw    string
	TaskID string `json:"task_id"`
	URLs   int    `json:"urls"`
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func (c *bucketEventsClient) do(method, domain, authorization string, body []byte) *bucketEventsAnswer {
	c.t.Helper()
	return c.doReader(method, domain, authorization, bytes.NewReader(body))
}

// doReader sends body as is: a reader of unknown length is sent chunked,
// without Content-Length.
func (c *bucketEventsClient) doReader(method, domain, authorization string, body io.Reader) *bucketEventsAnswer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+"/v1/bucket-events/"+domain, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	a := &bucketEventsAnswer{code: resp.StatusCode, header: resp.Header, raw: string(b)}
	if method != http.MethodHead {
		if err := json.Unmarshal(b, a); err != nil {
			c.t.Fatalf("%s %s: %d, body not JSON: %q", method, domain, resp.StatusCode, b)
		}
	}
	return a
}

func (c *bucketEventsClient) post(domain, secret string, body []byte) *bucketEventsAnswer {
	c.t.Helper()
	auth := ""
	if secret != "" {
		auth = "Bearer " + secret
	}
	return c.do(http.MethodPost, domain, auth, body)
}

func wantCode(t *testing.T, a *bucketEventsAnswer, code int) {
	t.Helper()
	if a.code != code {
		t.Fatalf("want HTTP %d, got %d: %s", code, a.code, a.raw)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestAutoRefresh drives automatic cache update end to end: the RPCs, the
// bucket-events endpoint over real HTTP, the tasks it creates, and what is
// kept in etcd and the logs.
func TestAutoRefresh(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) { c.BucketEventsAddr = "127.0.0.1:0" })
	admin, readOnly := env.NewAccount(t, "acme")
	otherAdmin, _ := env.NewAccount(t, "other")
	c, ro, other := env.Clients(t, admin), env.Clients(t, readOnly), env.Clients(t, otherAdmin)
	op := env.Clients(t, env.OperatorToken)
	hc := newBucketEventsClient(t, env)
	ctx := ctxT(t)

	const dom = "assets.example.com"
	for _, d := range []*outpostv1.CreateDomainRequest{
		{Name: dom, Origins: []*outpostv1.Origin{ossOrigin("assets.s3.us-east-1.amazonaws.com"), ipOrigin("192.0.2.1")}},
		{Name: "site.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1"), domainOrigin("origin.example.com")}},
		{Name: "*.img.example.com", Origins: []*outpostv1.Origin{ossOrigin("img.oss-cn-hangzhou.aliyuncs.com")}},
		{Name: "gone.example.com", Origins: []*outpostv1.Origin{ossOrigin("gone.s3.amazonaws.com")}},
	} {
		if _, err := c.Domains.CreateDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	var secrets []string // every secret issued, to look for later
	enable := func(domain string) string {
		t.Helper()
		resp, err := c.Cache.EnableAutoRefresh(ctx, &outpostv1.EnableAutoRefreshRequest{Domain: domain})
		if err != nil {
			t.Fatal(err)
		}
		s := resp.GetSecret()
		if !strings.HasPrefix(s, "obk_") || len(s) != len("obk_")+43 || strings.ContainsAny(s, "+/=") {
			t.Fatalf("secret %q: want obk_ and 32 bytes of base64url", s)
		}
		if resp.GetEndpointPath() != "/v1/bucket-events/"+domain || !resp.GetSettings().GetAutoRefresh() {
			t.Fatalf("enable: %v", resp)
		}
		secrets = append(secrets, s)
		return s
	}
	storedHash := func(domain string) (string, bool) {
		t.Helper()
		v, found, err := env.Controller.Store().GetRaw(ctx, store.AutoRefreshKey(domain))
		if err != nil {
			t.Fatal(err)
		}
		return v, found
	}
	taskCount := func() int {
		t.Helper()
		resp, err := ro.Content.ListTasks(ctx, &outpostv1.ListTasksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.GetTasks())
	}

	secret := enable(dom)

	t.Run("enable", func(t *testing.T) {
		if h, found := storedHash(dom); !found || h != sha256Hex(secret) {
			t.Fatalf("stored %q (found %v), want the SHA-256 of the secret", h, found)
		}
		list, err := ro.Cache.ListCacheRules(ctx, &outpostv1.ListCacheRulesRequest{Domain: dom})
		if err != nil || !list.GetSettings().GetAutoRefresh() {
			t.Fatalf("cache settings %v, %v", list.GetSettings(), err)
		}
		d, err := ro.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: dom})
		if err != nil || !d.GetDomain().GetCache().GetAutoRefresh() {
			t.Fatalf("domain %v, %v", d.GetDomain(), err)
		}
		// Other RPCs on the cache settings keep the flag.
		if _, err := c.Cache.SetCacheKeyOptions(ctx, &outpostv1.SetCacheKeyOptionsRequest{Domain: dom, IgnoreQuery: true}); err != nil {
			t.Fatal(err)
		}
		if list, _ := ro.Cache.ListCacheRules(ctx, &outpostv1.ListCacheRulesRequest{Domain: dom}); !list.GetSettings().GetAutoRefresh() {
			t.Fatal("SetCacheKeyOptions cleared auto_refresh")
		}
	})

	t.Run("refused", func(t *testing.T) {
		_, err := c.Cache.EnableAutoRefresh(ctx, &outpostv1.EnableAutoRefreshRequest{Domain: "site.example.com"})
		wantErr(t, err, codes.FailedPrecondition, "NoBucketOrigin")
		_, err = c.Cache.EnableAutoRefresh(ctx, &outpostv1.EnableAutoRefreshRequest{Domain: "*.img.example.com"})
		wantErr(t, err, codes.FailedPrecondition, "WildcardDomain")
		_, err = c.Cache.EnableAutoRefresh(ctx, &outpostv1.EnableAutoRefreshRequest{Domain: "nope.example.com"})
		wantErr(t, err, codes.NotFound, "DomainNotFound")
		_, err = other.Cache.EnableAutoRefresh(ctx, &outpostv1.EnableAutoRefreshRequest{Domain: dom})
		wantErr(t, err, codes.NotFound, "DomainNotFound")
		_, err = other.Cache.DisableAutoRefresh(ctx, &outpostv1.DisableAutoRefreshRequest{Domain: dom})
		wantErr(t, err, codes.NotFound, "DomainNotFound")
		_, err = ro.Cache.EnableAutoRefresh(ctx, &outpostv1.EnableAutoRefreshRequest{Domain: dom})
		wantErr(t, err, codes.PermissionDenied, "ReadOnlyToken")
		_, err = ro.Cache.DisableAutoRefresh(ctx, &outpostv1.DisableAutoRefreshRequest{Domain: dom})
		wantErr(t, err, codes.PermissionDenied, "ReadOnlyToken")
		for _, d := range []string{"site.example.com", "*.img.example.com"} {
			if _, found := storedHash(d); found {
				t.Fatalf("%s: a refused enable stored a secret", d)
			}
		}
		if h, _ := storedHash(dom); h != sha256Hex(secret) {
			t.Fatal("a refused call changed the secret")
		}
	})

	t.Run("S3 event", func(t *testing.T) {
		body := s3Notification(
			s3Record("ObjectCreated:Put", "assets", "images/summer+holiday%2B2024.jpg"),
			s3Record("s3:TestEvent", "assets", ""),
			s3Record("ObjectCreated:CompleteMultipartUpload", "assets", "docs/r%C3%A9sum%C3%A9.pdf"),
		)
		a := hc.post(dom, secret, body)
		wantCode(t, a, http.StatusAccepted)
		want := []string{
			"http://assets.example.com/images/summer%20holiday+2024.jpg",
			"http://assets.example.com/docs/r%C3%A9sum%C3%A9.pdf",
		}
		if a.URLs != 2 || a.TaskID == "" {
			t.Fatalf("answer %s", a.raw)
		}
		got, err := ro.Content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: a.TaskID})
		if err != nil {
			t.Fatal(err)
		}
		task := got.GetTask()
		if !slices.Equal(task.GetEntries(), want) || task.GetAccount() != "acme" ||
			task.GetKind() != outpostv1.TaskKind_TASK_KIND_REFRESH || task.GetRefreshType() != outpostv1.RefreshType_REFRESH_TYPE_FILE {
			t.Fatalf("task %v, want entries %q", task, want)
		}
		// The same purge instruction as RefreshObjects makes.
		purge := &outpostv1.Purge{}
		if _, found, err := env.Controller.Store().Get(ctx, store.PurgeKey(a.TaskID), purge); err != nil || !found ||
			!slices.Equal(purge.GetEntries(), want) || purge.GetType() != outpostv1.RefreshType_REFRESH_TYPE_FILE {
			t.Fatalf("purge %v (found %v, %v)", purge, found, err)
		}
		_, err = other.Content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: a.TaskID})
		wantErr(t, err, codes.NotFound, "TaskNotFound")
	})

	t.Run("nothing to refresh", func(t *testing.T) {
		before := taskCount()
		for name, body := range map[string][]byte{
			"test event record": s3Notification(s3Record("s3:TestEvent", "assets", "")),
			"AWS test event":    []byte(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-01T12:00:00.000Z","Bucket":"assets","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}`),
			"object read":       s3Notification(s3Record("s3:ObjectAccessed:Get", "assets", "a.jpg")),
			"no records":        []byte(`{"Records":[]}`),
		} {
			a := hc.post(dom, secret, body)
			if a.code != http.StatusOK || a.URLs != 0 || a.TaskID != "" {
				t.Errorf("%s: %d %s", name, a.code, a.raw)
			}
		}
		if n := taskCount(); n != before {
			t.Fatalf("%d tasks, want %d", n, before)
		}
	})

	t.Run("unauthorized", func(t *testing.T) {
		before := taskCount()
		body := s3Notification(s3Record("ObjectCreated:Put", "assets", "x.jpg"))
		var answers []string
		for name, a := range map[string]*bucketEventsAnswer{
			"no secret":             hc.post(dom, "", body),
			"wrong secret":          hc.post(dom, "obk_"+strings.Repeat("A", 43), body),
			"secret with a suffix":  hc.post(dom, secret+"x", body),
			"basic scheme":          hc.do(http.MethodPost, dom, "Basic "+secret, body),
			"empty bearer":          hc.do(http.MethodPost, dom, "Bearer ", body),
			"unknown domain":        hc.post("nope.example.com", secret, body),
			"domain without it":     hc.post("site.example.com", secret, body),
			"invalid domain":        hc.post("not_a_domain", secret, body),
			"operator token":        hc.post(dom, env.OperatorToken, body),
			"admin token of domain": hc.post(dom, admin, body),
		} {
			if a.code != http.StatusUnauthorized || a.TaskID != "" || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: %d %s", name, a.code, a.raw)
			}
			answers = append(answers, a.raw)
		}
		// One answer for every refusal: nothing tells whether the domain exists.
		if len(slices.Compact(slices.Sorted(slices.Values(answers)))) != 1 {
			t.Errorf("different 401 answers: %q", answers)
		}
		if n := taskCount(); n != before {
			t.Fatalf("%d tasks after refusals, want %d", n, before)
		}
		// The bare secret, as some stores send a token without a scheme, and
		// the scheme in any case, work.
		wantCode(t, hc.do(http.MethodPost, dom, secret, body), http.StatusAccepted)
		wantCode(t, hc.do(http.MethodPost, dom, "bearer "+secret, body), http.StatusAccepted)
		wantCode(t, hc.post(strings.ToUpper(dom), secret, body), http.StatusAccepted)
	})

	t.Run("methods", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete} {
			a := hc.do(m, dom, "", nil)
			if a.code != http.StatusMethodNotAllowed || a.header.Get("Allow") != http.MethodPost {
				t.Errorf("%s: %d, Allow %q", m, a.code, a.header.Get("Allow"))
			}
		}
	})

	t.Run("malformed and too large", func(t *testing.T) {
		before := taskCount()
		for name, body := range map[string][]byte{
			"not JSON":          []byte(`Records: [`),
			"truncated":         s3Notification(s3Record("ObjectCreated:Put", "assets", "a.jpg"))[:100],
			"records an object": []byte(`{"Records":{"eventName":"ObjectCreated:Put"}}`),
			"trailing data":     append(s3Notification(s3Record("ObjectCreated:Put", "assets", "a.jpg")), "{}"...),
			"empty":             nil,
		} {
			if a := hc.post(dom, secret, body); a.code != http.StatusBadRequest {
				t.Errorf("%s: %d %s", name, a.code, a.raw)
			}
		}
		big := s3Notification(s3Record("ObjectCreated:Put", "assets", strings.Repeat("a", 1<<20)))
		wantCode(t, hc.post(dom, secret, big), http.StatusRequestEntityTooLarge)
		chunked := hc.doReader(http.MethodPost, dom, "Bearer "+secret, io.MultiReader(bytes.NewReader(big)))
		wantCode(t, chunked, http.StatusRequestEntityTooLarge)
		many := make([]string, 1001)
		for i := range many {
			many[i] = fmt.Sprintf(`{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"f%d"}}}`, i)
		}
		wantCode(t, hc.post(dom, secret, s3Notification(many...)), http.StatusRequestEntityTooLarge)
		if n := taskCount(); n != before {
			t.Fatalf("%d tasks, want %d", n, before)
		}
		// A thousand records are fine.
		a := hc.post(dom, secret, s3Notification(many[:1000]...))
		if a.code != http.StatusAccepted || a.URLs != 1000 {
			t.Fatalf("1000 records: %d %s", a.code, a.raw)
		}
	})

	t.Run("rotate", func(t *testing.T) {
		old := secret
		secret = enable(dom)
		if secret == old {
			t.Fatal("enabling again returned the same secret")
		}
		if h, _ := storedHash(dom); h != sha256Hex(secret) {
			t.Fatal("the stored hash is not the new secret's")
		}
		body := s3Notification(s3Record("ObjectRemoved:Delete", "assets", "old.jpg"))
		wantCode(t, hc.post(dom, old, body), http.StatusUnauthorized)
		wantCode(t, hc.post(dom, secret, body), http.StatusAccepted)
	})

	t.Run("quota", func(t *testing.T) {
		if _, err := op.Accounts.CreateAccount(ctx, &outpostv1.CreateAccountRequest{Id: "small"}); err != nil {
			t.Fatal(err)
		}
		if _, err := op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "small",
			ContentQuota: &outpostv1.ContentQuota{RefreshUrls: 2},
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"content_quota.refresh_urls"}}}); err != nil {
			t.Fatal(err)
		}
		sc := env.Clients(t, env.NewToken(t, "small", outpostv1.Role_ROLE_ADMIN))
		if _, err := sc.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "small.example.com", Origins: []*outpostv1.Origin{ossOrigin("small.s3.amazonaws.com")}}); err != nil {
			t.Fatal(err)
		}
		resp, err := sc.Cache.EnableAutoRefresh(ctx, &outpostv1.EnableAutoRefreshRequest{Domain: "small.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, resp.GetSecret())
		two := s3Notification(s3Record("ObjectCreated:Put", "small", "1.jpg"), s3Record("ObjectCreated:Put", "small", "2.jpg"))
		wantCode(t, hc.post("small.example.com", resp.GetSecret(), two), http.StatusAccepted)
		a := hc.post("small.example.com", resp.GetSecret(), s3Notification(s3Record("ObjectCreated:Copy", "small", "3.jpg")))
		if a.code != http.StatusTooManyRequests || a.Reason != "ContentQuotaExceeded" || a.header.Get("Retry-After") == "" {
			t.Fatalf("over quota: %d %s (Retry-After %q)", a.code, a.raw, a.header.Get("Retry-After"))
		}
		tasks, err := sc.Content.ListTasks(ctx, &outpostv1.ListTasksRequest{})
		if err != nil || len(tasks.GetTasks()) != 1 {
			t.Fatalf("%d tasks, %v", len(tasks.GetTasks()), err)
		}
	})

	t.Run("disable", func(t *testing.T) {
		resp, err := c.Cache.DisableAutoRefresh(ctx, &outpostv1.DisableAutoRefreshRequest{Domain: dom})
		if err != nil || resp.GetSettings().GetAutoRefresh() || !resp.GetSettings().GetIgnoreQuery() {
			t.Fatalf("disable: %v, %v", resp, err)
		}
		if _, found := storedHash(dom); found {
			t.Fatal("the secret hash survived disabling")
		}
		wantCode(t, hc.post(dom, secret, s3Notification(s3Record("ObjectCreated:Put", "assets", "a.jpg"))), http.StatusUnauthorized)
		// Disabling again is fine.
		if _, err := c.Cache.DisableAutoRefresh(ctx, &outpostv1.DisableAutoRefreshRequest{Domain: dom}); err != nil {
			t.Fatal(err)
		}
		list, err := ro.Cache.ListCacheRules(ctx, &outpostv1.ListCacheRulesRequest{Domain: dom})
		if err != nil || list.GetSettings().GetAutoRefresh() {
			t.Fatalf("cache settings %v, %v", list.GetSettings(), err)
		}
	})

	t.Run("delete domain", func(t *testing.T) {
		s := enable("gone.example.com")
		if _, err := c.Domains.DeleteDomain(ctx, &outpostv1.DeleteDomainRequest{Name: "gone.example.com"}); err != nil {
			t.Fatal(err)
		}
		if _, found := storedHash("gone.example.com"); found {
			t.Fatal("the secret hash survived the domain")
		}
		// Added again, by another account: the old secret is worthless.
		if _, err := other.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "gone.example.com", Origins: []*outpostv1.Origin{ossOrigin("gone.s3.amazonaws.com")}}); err != nil {
			t.Fatal(err)
		}
		wantCode(t, hc.post("gone.example.com", s, s3Notification(s3Record("ObjectCreated:Put", "gone", "a.jpg"))), http.StatusUnauthorized)
	})

	t.Run("secrets are not kept or logged", func(t *testing.T) {
		if len(secrets) < 4 {
			t.Fatalf("only %d secrets issued", len(secrets))
		}
		kvs, _, err := env.Controller.Store().Range(context.Background(), store.Prefix, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		logs := env.Logs.String()
		if !strings.Contains(logs, "bucket events") {
			t.Fatal("the endpoint logged nothing")
		}
		for _, s := range secrets {
			for _, kv := range kvs {
				if bytes.Contains(kv.Value, []byte(s)) || strings.Contains(kv.Key, s) {
					t.Fatalf("etcd %s holds a secret", kv.Key)
				}
			}
			if strings.Contains(logs, s) || strings.Contains(logs, s[4:]) {
				t.Fatal("the controller logged a secret")
			}
		}
	})
}
