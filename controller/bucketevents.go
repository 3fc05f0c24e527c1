package controller

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The bucket-events endpoint: POST /v1/bucket-events/<domain> with
// "Authorization: Bearer <secret>" and an S3 event notification (the
// {"Records":[...]} JSON that AWS S3, MinIO and other S3-compatible stores
// send to webhooks). Every ObjectCreated:* and ObjectRemoved:* record names
// an object whose URL http://<domain>/<key> is refreshed; one request
// becomes one refresh task (type file) of the domain's account, made by the
// same code as ContentService.RefreshObjects, so the same quotas apply.
//
// Answers: 202 {"task_id","urls"}; 200 {"urls":0} when no record applies
// (s3:TestEvent, other event types); 401 for a missing or wrong secret,
// whether or not the domain exists; 400 for malformed JSON; 413 for a body
// over 1 MiB or over 1000 records; 429 when the account's daily refresh
// quota is used up; 405 for any method but POST (MinIO probes with GET or
// HEAD when the webhook is configured; 405 satisfies it).

// Limits of the bucket-events endpoint.
const (
	maxBucketEventBytes   = 1 << 20
	maxBucketEventRecords = maxFileEntries
	// maxObjectKeyBytes is the longest object key of S3 (and of MinIO and
	// OSS); escaped, such a key still fits maxURLBytes.
	maxObjectKeyBytes = 1024
	// bucketEventsTimeout bounds the work of one request.
	bucketEventsTimeout = 20 * time.Second
)

// s3Event is the part of an S3 event notification that matters here.
// MinIO also sends top-level "EventName" and "Key" fields; the Records,
// which AWS and MinIO both send, are what is read.
type s3Event struct {
	Records []s3Record `json:"Records"`
}

type s3Record struct {
	EventName string `json:"eventName"`
	S3        struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			// URL-encoded, '+' for space.
			Key string `json:"key"`
		} `json:"object"`
	} `json:"s3"`
}

// errTooManyRecords is returned by parseBucketEvents for a notification
// with more than maxBucketEventRecords records.
var errTooManyRecords = fmt.Errorf("more than %d records in one notification", maxBucketEventRecords)

// objectChanged reports whether an S3 event name says an object was
// created (written, copied, completed) or removed. AWS names events without
// the "s3:" prefix in records ("ObjectCreated:Put"), MinIO with it.
func objectChanged(eventName string) bool {
	n := strings.TrimPrefix(eventName, "s3:")
	return strings.HasPrefix(n, "ObjectCreated:") || strings.HasPrefix(n, "ObjectRemoved:")
}

// objectURL is the URL of an object key on domain, its path escaped.
func objectURL(domain, key string) string {
	return "http://" + domain + (&url.URL{Path: "/" + key}).EscapedPath()
}

// parseBucketEvents reads an S3 event notification and returns the URLs on
// domain of the objects it says were created or removed, without
// duplicates, in the order of the records. skipped counts the records of
// such events whose key is not valid (not URL-encoded properly, empty or
// longer than S3 allows). The error is a *json error for malformed JSON, or
// errTooManyRecords.
func parseBucketEvents(domain string, body []byte) (urls []string, skipped int, err error) {
	var ev s3Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, 0, err
	}
	if len(ev.Records) > maxBucketEventRecords {
		return nil, 0, errTooManyRecords
	}
	seen := map[string]bool{}
	for _, r := range ev.Records {
		if !objectChanged(r.EventName) {
			continue
		}
		key, err := url.QueryUnescape(r.S3.Object.Key)
		if err != nil || key == "" || len(key) > maxObjectKeyBytes {
			skipped++
			continue
		}
		u := objectURL(domain, key)
		if !seen[u] {
			seen[u] = true
			urls = append(urls, u)
		}
	}
	return urls, skipped, nil
}

// startBucketEvents serves the bucket-events endpoint on lis until
// stopBucketEvents.
func (c *Controller) startBucketEvents(lis net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc(bucketEventsPathPrefix+"{domain}", c.serveBucketEvents)
	c.events = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      bucketEventsTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	c.eventsLis = lis
	c.eventsDone = make(chan struct{})
	srv, done := c.events, c.eventsDone
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("bucket events serve", "err", err)
		}
	}()
	c.log.Info("bucket events endpoint serving", "addr", lis.Addr().String())
}

// stopBucketEvents lets in-flight requests finish for up to five seconds
// and stops the endpoint. It is safe to call more than once.
func (c *Controller) stopBucketEvents() {
	if c.events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.events.Shutdown(ctx); err != nil {
		c.events.Close()
	}
	<-c.eventsDone
	c.events = nil
}

// BucketEventsAddr is the address the bucket-events endpoint listens on,
// or "" when it is off.
func (c *Controller) BucketEventsAddr() string {
	if c.eventsLis == nil {
		return ""
	}
	return c.eventsLis.Addr().String()
}

// bucketEventsResponse is the JSON body of every answer.
type bucketEventsResponse struct {
	TaskID string `json:"task_id,omitempty"`
	URLs   int    `json:"urls"`
	// Skipped counts records of object changes whose key was not valid.
	Skipped int    `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

func writeBucketEventsJSON(w http.ResponseWriter, code int, resp *bucketEventsResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(resp)
}

// errBucketEventsUnauthorized is the one answer to a missing or wrong
// secret, a domain without automatic cache update or no such domain.
var errBucketEventsUnauthorized = errors.New("unauthorized")

func (c *Controller) serveBucketEvents(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rawDomain := r.PathValue("domain")
	code, resp := c.handleBucketEvents(w, r, rawDomain)
	writeBucketEventsJSON(w, code, resp)
	attrs := []any{"domain", rawDomain, "code", code, "urls", resp.URLs, "remote", r.RemoteAddr,
		"duration", time.Since(start).Round(time.Microsecond)}
	if resp.TaskID != "" {
		attrs = append(attrs, "task_id", resp.TaskID)
	}
	if resp.Skipped > 0 {
		attrs = append(attrs, "skipped", resp.Skipped)
	}
	if resp.Reason != "" {
		attrs = append(attrs, "reason", resp.Reason)
	}
	c.log.Info("bucket events", attrs...)
}

// handleBucketEvents does the work of one request and returns the answer.
// It never logs or returns the secret.
func (c *Controller) handleBucketEvents(w http.ResponseWriter, r *http.Request, rawDomain string) (int, *bucketEventsResponse) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return http.StatusMethodNotAllowed, &bucketEventsResponse{Error: "send S3 event notifications with POST"}
	}
	ctx, cancel := context.WithTimeout(r.Context(), bucketEventsTimeout)
	defer cancel()
	account, domain, err := c.authorizeBucketEvents(ctx, rawDomain, r.Header.Get("Authorization"))
	if errors.Is(err, errBucketEventsUnauthorized) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost bucket events"`)
		return http.StatusUnauthorized, &bucketEventsResponse{Error: "missing or invalid secret: send \"Authorization: Bearer <secret>\" with the secret of the domain's automatic cache update"}
	}
	if err != nil {
		return c.bucketEventsError(err)
	}
	if r.ContentLength > maxBucketEventBytes {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBucketEventBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return tooLarge()
		}
		return http.StatusBadRequest, &bucketEventsResponse{Error: "cannot read the request body"}
	}
	urls, skipped, err := parseBucketEvents(domain, body)
	switch {
	case errors.Is(err, errTooManyRecords):
		return http.StatusRequestEntityTooLarge, &bucketEventsResponse{Error: err.Error() + "; send fewer per request"}
	case err != nil:
		return http.StatusBadRequest, &bucketEventsResponse{Error: "the body is not an S3 event notification (JSON with \"Records\")"}
	case len(urls) == 0:
		return http.StatusOK, &bucketEventsResponse{Skipped: skipped}
	}
	task, err := c.refreshObjects(ctx, account, outpostv1.RefreshType_REFRESH_TYPE_FILE, urls)
	if err != nil {
		code, resp := c.bucketEventsError(err)
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", strconv.Itoa(secondsToNextUTCDay(c.cfg.Now())))
		}
		resp.Skipped = skipped
		return code, resp
	}
	return http.StatusAccepted, &bucketEventsResponse{TaskID: task.GetId(), URLs: len(task.GetEntries()), Skipped: skipped}
}

func tooLarge() (int, *bucketEventsResponse) {
	return http.StatusRequestEntityTooLarge, &bucketEventsResponse{Error: fmt.Sprintf("the body is over %d bytes; send fewer records per request", maxBucketEventBytes)}
}

// secondsToNextUTCDay is when the daily content quotas start again.
func secondsToNextUTCDay(now time.Time) int {
	now = now.UTC()
	next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	return max(1, int(next.Sub(now).Seconds()))
}

// bucketEventsError maps an error of the store or of the refresh to an
// HTTP answer.
func (c *Controller) bucketEventsError(err error) (int, *bucketEventsResponse) {
	if ae, ok := errors.AsType[*apierr.Error](err); ok {
		switch ae.Code {
		case codes.ResourceExhausted:
			return http.StatusTooManyRequests, &bucketEventsResponse{Error: ae.Message, Reason: ae.Reason}
		case codes.InvalidArgument:
			return http.StatusBadRequest, &bucketEventsResponse{Error: ae.Message, Reason: ae.Reason}
		case codes.Unavailable, codes.Aborted:
			return http.StatusServiceUnavailable, &bucketEventsResponse{Error: "try again later", Reason: ae.Reason}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return http.StatusServiceUnavailable, &bucketEventsResponse{Error: "try again later"}
	}
	c.log.Error("bucket events: internal error", "err", err)
	return http.StatusInternalServerError, &bucketEventsResponse{Error: "internal error"}
}

// authorizeBucketEvents checks the bearer secret of a request for a
// domain and returns the domain's account and normalised name. Every
// refusal is errBucketEventsUnauthorized, so the answer does not tell
// whether the domain exists.
func (c *Controller) authorizeBucketEvents(ctx context.Context, rawDomain, authorization string) (account, domain string, err error) {
	secret, ok := bucketEventsSecret(authorization)
	if !ok {
		return "", "", errBucketEventsUnauthorized
	}
	domain, err = names.Domain(rawDomain)
	if err != nil || names.IsWildcard(domain) {
		return "", "", errBucketEventsUnauthorized
	}
	want, found, err := c.store.GetRaw(ctx, store.AutoRefreshKey(domain))
	if err != nil {
		return "", "", err
	}
	got := hashSecret(secret)
	if !found || len(want) != len(got) {
		// Compare anyway, so that a missing domain takes as long.
		want = strings.Repeat("0", len(got))
		found = false
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 || !found {
		return "", "", errBucketEventsUnauthorized
	}
	d := &outpostv1.Domain{}
	_, found, err = c.store.Get(ctx, store.DomainKey(domain), d)
	if err != nil {
		return "", "", err
	}
	if !found || !d.GetCache().GetAutoRefresh() || d.GetAccount() == "" {
		return "", "", errBucketEventsUnauthorized
	}
	return d.GetAccount(), domain, nil
}

// bucketEventsSecret extracts the secret of an Authorization header:
// "Bearer <secret>", or the bare secret ("obk_..."), which some stores send
// when their webhook token is configured without a scheme.
func bucketEventsSecret(authorization string) (string, bool) {
	h := strings.TrimSpace(authorization)
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok {
		return h, strings.HasPrefix(h, "obk_")
	}
	secret = strings.TrimSpace(secret)
	return secret, strings.EqualFold(scheme, "bearer") && secret != ""
}
