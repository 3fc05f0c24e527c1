package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Per-request limits of the content API.
const (
	maxFileEntries      = 1000 // file and ignore-params
	maxDirectoryEntries = 100
	maxRegexEntries     = 20
	maxPrefetchURLs     = 100
	maxURLBytes         = 4096
	maxRegexBytes       = 1024
	maxRegionBytes      = 64
	// maxContentQuota bounds what an operator can set, to catch typos.
	maxContentQuota = 100_000_000
	// taskAttempts is how often a task creation is retried when another
	// request of the account raced it on the quota usage record.
	taskAttempts = 8
)

// quotaDayLayout names the UTC day of a quota usage record.
const quotaDayLayout = "2006-01-02"

// taskIDPattern is "task-", the creation time in unix nanoseconds as 16 hex
// digits, "-" and 4 random hex digits: IDs sort by creation time.
var taskIDPattern = regexp.MustCompile(`^task-[0-9a-f]{16}-[0-9a-f]{4}$`)

// newTaskID returns a task ID for a task created at t.
func newTaskID(t time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return taskIDBound(t) + "-" + hex.EncodeToString(b)
}

// taskIDBound is the prefix every task ID created at t starts with; it
// sorts after the ID of every task created before t.
func taskIDBound(t time.Time) string {
	return fmt.Sprintf("task-%016x", uint64(t.UnixNano()))
}

// contentService implements outpostv1.ContentServiceServer: each refresh or
// prefetch request becomes a task record and an instruction in the config
// subtree (a Purge or a Prefetch) that the config stream carries to every
// edge node. Progress is derived when the task is read.
type contentService struct {
	outpostv1.UnimplementedContentServiceServer
	c *Controller
}

var _ outpostv1.ContentServiceServer = (*contentService)(nil)

// entryURL is an absolute URL of a refresh or prefetch entry, split.
type entryURL struct {
	// origin is "scheme://host[:port]", normalised: lower case, without the
	// scheme's default port.
	origin string
	host   string
	// rest is the path and query as given, starting with "/".
	rest string
}

func invalidURL(format string, args ...any) *apierr.Error {
	return apierr.InvalidArgument(apierr.ReasonInvalidURL, format, args...)
}

// parseEntryURL splits an absolute http(s) URL. With regex, what follows the
// host is a regular expression and may hold any printable character.
func parseEntryURL(raw string, regex bool) (entryURL, error) {
	if len(raw) > maxURLBytes {
		return entryURL{}, invalidURL("URL is %d bytes long; at most %d are allowed", len(raw), maxURLBytes)
	}
	for i := 0; i < len(raw); i++ {
		if b := raw[i]; b <= ' ' || b >= 0x7f {
			return entryURL{}, invalidURL("%q contains spaces, control or non-ASCII characters: percent-encode them", raw)
		}
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "http" && scheme != "https") {
		return entryURL{}, invalidURL("%q is not an absolute http:// or https:// URL", raw)
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 || rest[end] != '/' {
		return entryURL{}, invalidURL("%q has no path: add one starting with \"/\", such as https://cdn.example.com/", raw)
	}
	authority, path := rest[:end], rest[end:]
	if strings.Contains(authority, "@") {
		return entryURL{}, invalidURL("%q has user information; leave it out", raw)
	}
	if strings.HasPrefix(authority, "[") {
		return entryURL{}, invalidURL("%q names an IP address: use the accelerated domain's name", raw)
	}
	host, port := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i+1:]
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return entryURL{}, invalidURL("%q has an invalid port %q", raw, port)
		}
		port = strconv.FormatUint(n, 10)
		if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
			port = ""
		}
	}
	h, err := names.Host(host, apierr.ReasonInvalidURL)
	if err != nil {
		return entryURL{}, err
	}
	if !regex && strings.Contains(path, "#") {
		return entryURL{}, invalidURL("%q has a fragment (#...), which is never sent to the edge; leave it out", raw)
	}
	origin := scheme + "://" + h
	if port != "" {
		origin += ":" + port
	}
	return entryURL{origin: origin, host: h, rest: path}, nil
}

// normalizeEntry checks one refresh entry of type typ and returns it
// normalised, with the host it names.
func normalizeEntry(typ outpostv1.RefreshType, raw string) (entry, host string, err error) {
	u, err := parseEntryURL(raw, typ == outpostv1.RefreshType_REFRESH_TYPE_REGEX)
	if err != nil {
		return "", "", err
	}
	switch typ {
	case outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY:
		if strings.Contains(u.rest, "?") {
			return "", "", invalidURL("directory %q has a query; a directory is a path prefix ending in \"/\"", raw)
		}
		if !strings.HasSuffix(u.rest, "/") {
			return "", "", invalidURL("directory %q must end with \"/\"", raw)
		}
	case outpostv1.RefreshType_REFRESH_TYPE_IGNORE_PARAMS:
		u.rest, _, _ = strings.Cut(u.rest, "?")
	case outpostv1.RefreshType_REFRESH_TYPE_REGEX:
		if len(u.rest) > maxRegexBytes {
			return "", "", apierr.InvalidArgument(apierr.ReasonInvalidRegex, "the regular expression is %d bytes long; at most %d are allowed", len(u.rest), maxRegexBytes)
		}
		if _, err := regexp.Compile(u.rest); err != nil {
			return "", "", apierr.InvalidArgument(apierr.ReasonInvalidRegex, "%q is not a valid regular expression (RE2 syntax): %v", u.rest, err)
		}
	}
	return u.origin + u.rest, u.host, nil
}

// entryLimit is the most entries a request of a refresh type may have.
func entryLimit(typ outpostv1.RefreshType) int {
	switch typ {
	case outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY:
		return maxDirectoryEntries
	case outpostv1.RefreshType_REFRESH_TYPE_REGEX:
		return maxRegexEntries
	}
	return maxFileEntries
}

func checkEntryCount(n, limit int, what string) error {
	if n == 0 {
		return apierr.InvalidArgument(apierr.ReasonNoEntries, "give at least one %s", what)
	}
	if n > limit {
		return apierr.InvalidArgument(apierr.ReasonTooManyEntries, "%d %ss in one request; at most %d are allowed: split the request", n, what, limit).
			With("limit", itoa(limit))
	}
	return nil
}

// normalizeEntries checks and normalises the entries of a request,
// dropping duplicates, and returns the hosts they name.
func normalizeEntries(typ outpostv1.RefreshType, raw []string) (entries, hosts []string, err error) {
	seen := map[string]bool{}
	seenHost := map[string]bool{}
	for i, r := range raw {
		e, h, err := normalizeEntry(typ, r)
		if err != nil {
			var ae *apierr.Error
			if errors.As(err, &ae) {
				return nil, nil, ae.With("entry_index", itoa(i))
			}
			return nil, nil, err
		}
		if !seen[e] {
			seen[e] = true
			entries = append(entries, e)
		}
		if !seenHost[h] {
			seenHost[h] = true
			hosts = append(hosts, h)
		}
	}
	return entries, hosts, nil
}

// checkHostsOwned makes sure every host is served by a domain of the
// account: the exact name or a one-label wildcard. Whether another account
// serves it is not disclosed.
func (c *Controller) checkHostsOwned(ctx context.Context, account string, hosts []string) error {
	idx, _, err := c.store.Range(ctx, store.AccountDomainsPrefix(account), "", 0)
	if err != nil {
		return err
	}
	owned := make(map[string]bool, len(idx))
	for _, kv := range idx {
		owned[store.LastSegment(kv.Key)] = true
	}
	for _, h := range hosts {
		if owned[h] {
			continue
		}
		if w := names.WildcardOf(h); w != "" && owned[w] {
			continue
		}
		return apierr.InvalidArgument(apierr.ReasonURLDomainNotOwned,
			"host %s is not served by any domain of your account; add the domain first", h).With("host", h)
	}
	return nil
}

func validRegion(region string) error {
	if len(region) > maxRegionBytes {
		return apierr.InvalidArgument(apierr.ReasonInvalidRegion, "region is %d bytes long; at most %d are allowed", len(region), maxRegionBytes)
	}
	for i := 0; i < len(region); i++ {
		if b := region[i]; b <= ' ' || b >= 0x7f {
			return apierr.InvalidArgument(apierr.ReasonInvalidRegion, "region %q must be printable ASCII without spaces", region)
		}
	}
	return nil
}

func (s *contentService) RefreshObjects(ctx context.Context, req *outpostv1.RefreshObjectsRequest) (*outpostv1.RefreshObjectsResponse, error) {
	task, err := s.c.refreshObjects(ctx, principalFrom(ctx).Account, req.GetType(), req.GetEntries())
	if err != nil {
		return nil, err
	}
	return &outpostv1.RefreshObjectsResponse{Task: task}, nil
}

// refreshObjects creates a refresh task of account: it checks and
// normalises the entries, checks that the account serves their hosts, and
// stores the task, its purge instruction and the quota usage in one
// transaction. RefreshObjects and the bucket-events endpoint both use it.
func (c *Controller) refreshObjects(ctx context.Context, account string, typ outpostv1.RefreshType, raw []string) (*outpostv1.Task, error) {
	if _, known := outpostv1.RefreshType_name[int32(typ)]; !known || typ == outpostv1.RefreshType_REFRESH_TYPE_UNSPECIFIED {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidRefreshType, "refresh type %d is not valid: use file, directory, regex or ignore-params", typ)
	}
	what := "URL"
	switch typ {
	case outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY:
		what = "directory"
	case outpostv1.RefreshType_REFRESH_TYPE_REGEX:
		what = "regular expression"
	}
	if err := checkEntryCount(len(raw), entryLimit(typ), what); err != nil {
		return nil, err
	}
	entries, hosts, err := normalizeEntries(typ, raw)
	if err != nil {
		return nil, err
	}
	if err := c.checkHostsOwned(ctx, account, hosts); err != nil {
		return nil, err
	}
	task := &outpostv1.Task{Account: account, Kind: outpostv1.TaskKind_TASK_KIND_REFRESH, RefreshType: typ, Entries: entries}
	return c.createTask(ctx, task, func(id string) (string, proto.Message) {
		return store.PurgeKey(id), &outpostv1.Purge{TaskId: id, Type: typ, Entries: entries}
	})
}

func (s *contentService) PrefetchObjects(ctx context.Context, req *outpostv1.PrefetchObjectsRequest) (*outpostv1.PrefetchObjectsResponse, error) {
	c, p := s.c, principalFrom(ctx)
	if err := checkEntryCount(len(req.GetUrls()), maxPrefetchURLs, "URL"); err != nil {
		return nil, err
	}
	urls, hosts, err := normalizeEntries(outpostv1.RefreshType_REFRESH_TYPE_FILE, req.GetUrls())
	if err != nil {
		return nil, err
	}
	region := req.GetRegion()
	if err := validRegion(region); err != nil {
		return nil, err
	}
	if err := c.checkHostsOwned(ctx, p.Account, hosts); err != nil {
		return nil, err
	}
	task := &outpostv1.Task{Account: p.Account, Kind: outpostv1.TaskKind_TASK_KIND_PREFETCH, Entries: urls, Region: region}
	task, err = c.createTask(ctx, task, func(id string) (string, proto.Message) {
		return store.PrefetchKey(id), &outpostv1.Prefetch{TaskId: id, Urls: urls, Region: region}
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.PrefetchObjectsResponse{Task: task}, nil
}

// createTask stores a task, its node instruction (from instruction, given
// the task ID) and the account's quota usage in one transaction, and
// returns the task as clients see it. The usage record guards the
// transaction, so racing requests (on any controller) cannot together go
// over the quota; a lost race is retried.
func (c *Controller) createTask(ctx context.Context, task *outpostv1.Task, instruction func(id string) (string, proto.Message)) (*outpostv1.Task, error) {
	nodes, err := c.connectedNodes(ctx, task.GetRegion())
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		now := c.cfg.Now()
		id := newTaskID(now)
		t := c.store.Begin()
		acct := &outpostv1.Account{}
		if found, err := t.Get(ctx, store.AccountKey(task.GetAccount()), acct); err != nil {
			return nil, err
		} else if !found {
			return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %s does not exist", task.GetAccount())
		}
		usageKey := store.QuotaUsageKey(task.GetAccount(), now.UTC().Format(quotaDayLayout))
		usage := &storagev1.ContentQuotaUsage{}
		if _, err := t.Get(ctx, usageKey, usage); err != nil {
			return nil, err
		}
		if err := chargeQuota(c.contentQuota(acct), usage, task); err != nil {
			return nil, err
		}
		if exists, err := t.Guard(ctx, store.TaskKey(id)); err != nil {
			return nil, err
		} else if exists {
			continue
		}
		stored := proto.Clone(task).(*outpostv1.Task)
		stored.Id = id
		stored.CreateTime = timestamppb.New(now)
		stored.NodesTotal = uint32(len(nodes))
		key, instr := instruction(id)
		t.Put(store.TaskKey(id), &storagev1.StoredTask{Task: stored, Nodes: nodes})
		t.PutRaw(store.AccountTaskKey(task.GetAccount(), id), "")
		t.Put(key, instr)
		t.Put(usageKey, usage)
		rev, err := t.Commit(ctx)
		if errors.Is(err, store.ErrConflict) && attempt < taskAttempts {
			// Another request of the account took quota meanwhile: charge again.
			sleep(ctx, time.Duration(mathrand.Int64N(int64(5*time.Millisecond*time.Duration(attempt)))))
			continue
		}
		if err != nil {
			return nil, err
		}
		applied, err := c.appliedRevisions(ctx)
		if err != nil {
			return nil, err
		}
		return c.taskView(ctx, store.KV{Key: store.TaskKey(id), ModRevision: rev, CreateRevision: rev},
			&storagev1.StoredTask{Task: stored, Nodes: nodes}, applied)
	}
}

// contentQuota is an account's effective content quota: its own non-zero
// fields, else the controller's defaults.
func (c *Controller) contentQuota(a *outpostv1.Account) *outpostv1.ContentQuota {
	q := a.GetContentQuota()
	pick := func(v uint32, def int) uint32 {
		if v > 0 {
			return v
		}
		return uint32(def)
	}
	return &outpostv1.ContentQuota{
		RefreshUrls:        pick(q.GetRefreshUrls(), c.cfg.RefreshURLQuota),
		RefreshDirectories: pick(q.GetRefreshDirectories(), c.cfg.RefreshDirectoryQuota),
		RefreshRegexes:     pick(q.GetRefreshRegexes(), c.cfg.RefreshRegexQuota),
		PrefetchUrls:       pick(q.GetPrefetchUrls(), c.cfg.PrefetchURLQuota),
	}
}

// chargeQuota adds a task's entries to the day's usage, or refuses them
// when they would go over the quota.
func chargeQuota(q *outpostv1.ContentQuota, usage *storagev1.ContentQuotaUsage, task *outpostv1.Task) error {
	var used *uint32
	var limit uint32
	var what string
	switch {
	case task.GetKind() == outpostv1.TaskKind_TASK_KIND_PREFETCH:
		used, limit, what = &usage.PrefetchUrls, q.GetPrefetchUrls(), "prefetch URLs"
	case task.GetRefreshType() == outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY:
		used, limit, what = &usage.RefreshDirectories, q.GetRefreshDirectories(), "refresh directories"
	case task.GetRefreshType() == outpostv1.RefreshType_REFRESH_TYPE_REGEX:
		used, limit, what = &usage.RefreshRegexes, q.GetRefreshRegexes(), "refresh regular expressions"
	default:
		used, limit, what = &usage.RefreshUrls, q.GetRefreshUrls(), "refresh URLs"
	}
	n := uint64(len(task.GetEntries()))
	if uint64(*used)+n > uint64(limit) {
		remaining := uint32(0)
		if *used < limit {
			remaining = limit - *used
		}
		return apierr.ResourceExhausted(apierr.ReasonContentQuotaExceeded,
			"this request has %d %s, but only %d of the account's daily %d are left today (UTC)", n, what, remaining, limit).
			With("remaining", strconv.FormatUint(uint64(remaining), 10)).
			With("quota", strconv.FormatUint(uint64(limit), 10))
	}
	*used += uint32(n)
	return nil
}

// connectedNodes returns the names of the nodes holding a config stream
// now, of one region unless region is empty, sorted.
func (c *Controller) connectedNodes(ctx context.Context, region string) ([]string, error) {
	sessions, _, err := c.store.Range(ctx, store.NodeSessionsPrefix(), "", 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range sessions {
		out = append(out, store.LastSegment(kv.Key))
	}
	if region == "" || len(out) == 0 {
		return out, nil
	}
	recs, _, err := c.store.Range(ctx, store.NodesPrefix(), "", 0)
	if err != nil {
		return nil, err
	}
	regions := map[string]string{}
	for _, kv := range recs {
		rec := &storagev1.NodeRecord{}
		if err := store.Decode(kv, rec); err == nil {
			regions[store.LastSegment(kv.Key)] = rec.GetInfo().GetRegion()
		}
	}
	return slices.DeleteFunc(out, func(n string) bool { return regions[n] != region }), nil
}

// appliedRevisions maps each known node to the config revision it applied.
func (c *Controller) appliedRevisions(ctx context.Context) (map[string]int64, error) {
	recs, _, err := c.store.Range(ctx, store.NodesPrefix(), "", 0)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(recs))
	for _, kv := range recs {
		rec := &storagev1.NodeRecord{}
		if err := store.Decode(kv, rec); err == nil {
			out[store.LastSegment(kv.Key)] = rec.GetAppliedRevision()
		}
	}
	return out, nil
}

func finished(s outpostv1.TaskStatus) bool {
	return s == outpostv1.TaskStatus_TASK_STATUS_COMPLETE || s == outpostv1.TaskStatus_TASK_STATUS_FAILED
}

// taskView returns a stored task as clients see it, its progress derived
// from the target nodes: for a refresh, the nodes that applied the config
// revision carrying the purge (applied maps nodes to their applied
// revision); for a prefetch, the nodes that reported it done. The first
// read that finds a task finished records its final state, which is kept
// from then on.
func (c *Controller) taskView(ctx context.Context, kv store.KV, st *storagev1.StoredTask, applied map[string]int64) (*outpostv1.Task, error) {
	task := proto.Clone(st.GetTask()).(*outpostv1.Task)
	task.Revision = kv.CreateRevision
	task.NodesTotal = uint32(len(st.GetNodes()))
	if finished(task.GetStatus()) {
		return task, nil
	}
	done := 0
	var completed *timestamppb.Timestamp
	switch task.GetKind() {
	case outpostv1.TaskKind_TASK_KIND_PREFETCH:
		reports, _, err := c.store.Range(ctx, store.TaskProgressPrefix(task.GetId()), "", 0)
		if err != nil {
			return nil, err
		}
		byNode := map[string]*storagev1.TaskProgress{}
		for _, r := range reports {
			tp := &storagev1.TaskProgress{}
			if err := store.Decode(r, tp); err == nil {
				byNode[store.LastSegment(r.Key)] = tp
			}
		}
		allFailed := true
		var lastErr *storagev1.TaskProgress
		for _, n := range st.GetNodes() {
			tp := byNode[n]
			if !tp.GetReport().GetDone() {
				allFailed = false
				continue
			}
			done++
			if tp.GetReport().GetSucceeded() > 0 || tp.GetReport().GetFailed() == 0 {
				allFailed = false
			}
			if tp.GetReport().GetError() != "" && (lastErr == nil || tp.GetReportTime().AsTime().After(lastErr.GetReportTime().AsTime())) {
				lastErr = tp
			}
			if completed == nil || tp.GetReportTime().AsTime().After(completed.AsTime()) {
				completed = tp.GetReportTime()
			}
		}
		if allFailed && done > 0 && done == len(st.GetNodes()) {
			task.Status = outpostv1.TaskStatus_TASK_STATUS_FAILED
			task.Error = lastErr.GetReport().GetError()
			if task.Error == "" {
				task.Error = "every URL failed on every node"
			}
		}
	default:
		for _, n := range st.GetNodes() {
			if applied[n] >= task.GetRevision() {
				done++
			}
		}
	}
	task.NodesDone = uint32(done)
	switch {
	case task.Status == outpostv1.TaskStatus_TASK_STATUS_FAILED:
	case done == len(st.GetNodes()):
		task.Status = outpostv1.TaskStatus_TASK_STATUS_COMPLETE
	case done == 0:
		task.Status = outpostv1.TaskStatus_TASK_STATUS_PENDING
	default:
		task.Status = outpostv1.TaskStatus_TASK_STATUS_REFRESHING
	}
	if finished(task.Status) {
		if completed == nil || len(st.GetNodes()) == 0 {
			completed = c.timestamp()
		}
		task.CompleteTime = completed
		c.recordFinished(ctx, kv, task, st.GetNodes())
	}
	return task, nil
}

// recordFinished keeps a finished task's final state, if the task is still
// the one that was read. It is best effort: a later read tries again.
func (c *Controller) recordFinished(ctx context.Context, kv store.KV, task *outpostv1.Task, nodes []string) {
	t := c.store.Begin()
	if found, err := t.Guard(ctx, kv.Key); err != nil || !found || t.ModRevision(kv.Key) != kv.ModRevision {
		return
	}
	stored := proto.Clone(task).(*outpostv1.Task)
	stored.Revision = 0
	t.Put(kv.Key, &storagev1.StoredTask{Task: stored, Nodes: nodes})
	if _, err := t.Commit(ctx); err != nil && !errors.Is(err, store.ErrConflict) {
		c.log.Debug("cannot record a finished task", "task_id", task.GetId(), "err", err)
	}
}

func taskNotFound(id string) error {
	return apierr.NotFound(apierr.ReasonTaskNotFound, "task %q not found", id).With("task_id", id)
}

// readTask reads a task of the caller's account. Tasks of other accounts
// are reported as not found.
func (c *Controller) readTask(ctx context.Context, id string) (store.KV, *storagev1.StoredTask, error) {
	if !taskIDPattern.MatchString(id) {
		return store.KV{}, nil, taskNotFound(id)
	}
	kv, found, err := c.store.GetKV(ctx, store.TaskKey(id))
	if err != nil {
		return store.KV{}, nil, err
	}
	st := &storagev1.StoredTask{}
	if found {
		if err := store.Decode(kv, st); err != nil {
			return store.KV{}, nil, err
		}
	}
	if !found || st.GetTask().GetAccount() != principalFrom(ctx).Account {
		return store.KV{}, nil, taskNotFound(id)
	}
	return kv, st, nil
}

func (s *contentService) GetTask(ctx context.Context, req *outpostv1.GetTaskRequest) (*outpostv1.GetTaskResponse, error) {
	c := s.c
	kv, st, err := c.readTask(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	applied, err := c.appliedRevisions(ctx)
	if err != nil {
		return nil, err
	}
	task, err := c.taskView(ctx, kv, st, applied)
	if err != nil {
		return nil, err
	}
	return &outpostv1.GetTaskResponse{Task: task}, nil
}

func (s *contentService) ListTasks(ctx context.Context, req *outpostv1.ListTasksRequest) (*outpostv1.ListTasksResponse, error) {
	c, p := s.c, principalFrom(ctx)
	prefix := store.AccountTasksPrefix(p.Account)
	before, err := decodePageToken(req.GetPageToken(), prefix)
	if err != nil {
		return nil, err
	}
	size := pageSize(req.GetPageSize())
	idx, _, err := c.store.RangeDesc(ctx, prefix, before, size+1)
	if err != nil {
		return nil, err
	}
	resp := &outpostv1.ListTasksResponse{}
	if int64(len(idx)) > size {
		idx = idx[:size]
		resp.NextPageToken = encodePageToken(idx[len(idx)-1].Key)
	}
	applied, err := c.appliedRevisions(ctx)
	if err != nil {
		return nil, err
	}
	for _, ikv := range idx {
		kv, found, err := c.store.GetKV(ctx, store.TaskKey(store.LastSegment(ikv.Key)))
		if err != nil {
			return nil, err
		}
		if !found {
			continue // expired between the two reads
		}
		st := &storagev1.StoredTask{}
		if err := store.Decode(kv, st); err != nil {
			return nil, err
		}
		if st.GetTask().GetAccount() != p.Account {
			continue
		}
		task, err := c.taskView(ctx, kv, st, applied)
		if err != nil {
			return nil, err
		}
		resp.Tasks = append(resp.Tasks, task)
	}
	return resp, nil
}
