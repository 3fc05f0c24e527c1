// Package store keeps the controller's state in etcd. It knows the key layout
// (keys.go) and offers one write mechanism, an optimistic transaction (Txn)
// guarded by the revisions of every key it read, so that racing controllers
// and admins can never overwrite each other's changes silently: the loser
// gets ErrConflict. Values are protojson, readable with etcdctl.
package store

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/internal/apierr"
)

// ErrConflict is returned by Txn.Commit when a key the transaction read was
// changed by someone else before it committed. It crosses the API as Aborted.
var ErrConflict = apierr.Aborted(apierr.ReasonConcurrentModification,
	"the resource was changed concurrently; read it again and retry")

var (
	marshal   = protojson.MarshalOptions{}
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// Store is the etcd-backed state. It is safe for concurrent use.
type Store struct {
	cli *clientv3.Client
}

// New returns a Store on an etcd client. The caller owns the client.
func New(cli *clientv3.Client) *Store { return &Store{cli: cli} }

// Client returns the etcd client, for watches.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Get reads one key into msg. It returns the key's ModRevision (0 and
// found=false when missing).
func (s *Store) Get(ctx context.Context, key string, msg proto.Message) (modRev int64, found bool, err error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, false, unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return 0, false, nil
	}
	kv := resp.Kvs[0]
	if err := decode(kv.Key, kv.Value, msg); err != nil {
		return 0, false, err
	}
	return kv.ModRevision, true, nil
}

// GetKV reads one key with its revisions.
func (s *Store) GetKV(ctx context.Context, key string) (kv KV, found bool, err error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return KV{}, false, unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, false, nil
	}
	return kvs(resp)[0], true, nil
}

// GetRaw reads one key's raw value.
func (s *Store) GetRaw(ctx context.Context, key string) (value string, found bool, err error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return "", false, unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return "", false, nil
	}
	return string(resp.Kvs[0].Value), true, nil
}

// KV is one key and its revisions, as Range returns them.
type KV struct {
	Key            string
	Value          []byte
	ModRevision    int64
	CreateRevision int64
}

// Range lists up to limit keys under prefix that sort after `after` (a full
// key, or "" for the start). limit 0 means no limit. It also returns the
// store's revision at the time of the read.
func (s *Store) Range(ctx context.Context, prefix, after string, limit int64) ([]KV, int64, error) {
	start := prefix
	if after != "" {
		start = after + "\x00"
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	resp, err := s.cli.Get(ctx, start, opts...)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	return kvs(resp), resp.Header.Revision, nil
}

// RangeDesc lists up to limit keys under prefix that sort before `before`
// (a full key, or "" for the end), in descending key order. limit 0 means
// no limit.
func (s *Store) RangeDesc(ctx context.Context, prefix, before string, limit int64) ([]KV, int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	if before != "" {
		end = before
	}
	opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	resp, err := s.cli.Get(ctx, prefix, opts...)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	return kvs(resp), resp.Header.Revision, nil
}

// RangeBelow lists up to limit keys under prefix that sort before `below`
// (a full key), in ascending key order. limit 0 means no limit.
func (s *Store) RangeBelow(ctx context.Context, prefix, below string, limit int64) ([]KV, error) {
	if below <= prefix {
		return nil, nil
	}
	if end := clientv3.GetPrefixRangeEnd(prefix); below > end {
		below = end
	}
	opts := []clientv3.OpOption{clientv3.WithRange(below), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	resp, err := s.cli.Get(ctx, prefix, opts...)
	if err != nil {
		return nil, unavailable(err)
	}
	return kvs(resp), nil
}

func kvs(resp *clientv3.GetResponse) []KV {
	out := make([]KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, KV{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision})
	}
	return out
}

// Count returns the number of keys under prefix.
func (s *Store) Count(ctx context.Context, prefix string) (int64, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, unavailable(err)
	}
	return resp.Count, nil
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, Prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, unavailable(err)
	}
	return resp.Header.Revision, nil
}

// Decode unmarshals a stored value.
func Decode(kv KV, msg proto.Message) error { return decode([]byte(kv.Key), kv.Value, msg) }

func decode(key, value []byte, msg proto.Message) error {
	if err := unmarshal.Unmarshal(value, msg); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

// Encode marshals a value for storage.
func Encode(msg proto.Message) ([]byte, error) { return marshal.Marshal(msg) }

// Txn is an optimistic read-modify-write transaction. Every Get records the
// ModRevision it saw (0 for a missing key) and is served at the revision of
// the first read, so the transaction sees one consistent snapshot. Commit
// applies the queued writes only if none of the keys read has changed since;
// otherwise it returns ErrConflict and writes nothing. A Txn is not safe for
// concurrent use and is used once.
type Txn struct {
	s        *Store
	rev      int64
	reads    map[string]int64
	prefixes []string
	ops      []clientv3.Op
	err      error
	// values holds what each key read so far held at the snapshot (nil:
	// missing). A key is read from etcd once: every read of a transaction
	// is at the same revision, so a second read could only return the same.
	values map[string]*mvccpb.KeyValue
}

// Begin starts a transaction.
func (s *Store) Begin() *Txn {
	return &Txn{s: s, reads: map[string]int64{}, values: map[string]*mvccpb.KeyValue{}}
}

// PreloadBatch is how many keys Preload reads per etcd request. It stays
// under etcd's default --max-txn-ops (128), so preloading works against any
// etcd.
const PreloadBatch = 128

// Get reads key into msg as of the transaction's snapshot and guards it.
func (t *Txn) Get(ctx context.Context, key string, msg proto.Message) (found bool, err error) {
	kv, err := t.get(ctx, key)
	if err != nil || kv == nil {
		return false, err
	}
	if msg == nil {
		return true, nil
	}
	return true, decode(kv.Key, kv.Value, msg)
}

// GetRaw is Get for a raw (non-protobuf) value.
func (t *Txn) GetRaw(ctx context.Context, key string) (value string, found bool, err error) {
	kv, err := t.get(ctx, key)
	if err != nil || kv == nil {
		return "", false, err
	}
	return string(kv.Value), true, nil
}

// get reads one key at the snapshot, recording its ModRevision.
func (t *Txn) get(ctx context.Context, key string) (*mvccpb.KeyValue, error) {
	if kv, ok := t.values[key]; ok {
		return kv, nil
	}
	opts := []clientv3.OpOption{}
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.s.cli.Get(ctx, key, opts...)
	if err != nil {
		return nil, unavailable(err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	if len(resp.Kvs) == 0 {
		t.record(key, nil)
		return nil, nil
	}
	t.record(key, resp.Kvs[0])
	return resp.Kvs[0], nil
}

// record remembers what key held at the snapshot and guards it.
func (t *Txn) record(key string, kv *mvccpb.KeyValue) {
	t.values[key] = kv
	if kv == nil {
		t.reads[key] = 0
		return
	}
	t.reads[key] = kv.ModRevision
}

// Preload reads many keys at the snapshot, PreloadBatch keys per etcd
// request instead of one request per key, and guards each of them as Get
// does. Later Get, GetRaw and Guard calls for these keys are answered from
// memory. Keys already read are skipped.
func (t *Txn) Preload(ctx context.Context, keys ...string) error {
	todo := make([]string, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if _, done := t.values[k]; done || seen[k] {
			continue
		}
		seen[k] = true
		todo = append(todo, k)
	}
	for len(todo) > 0 {
		batch := todo[:min(len(todo), PreloadBatch)]
		todo = todo[len(batch):]
		ops := make([]clientv3.Op, len(batch))
		for i, k := range batch {
			if t.rev > 0 {
				ops[i] = clientv3.OpGet(k, clientv3.WithRev(t.rev))
			} else {
				ops[i] = clientv3.OpGet(k)
			}
		}
		// A transaction of reads only: etcd serves every read at one
		// revision, the snapshot's once it is fixed.
		resp, err := t.s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return unavailable(err)
		}
		if t.rev == 0 {
			t.rev = resp.Header.Revision
		}
		for i, r := range resp.Responses {
			kvs := r.GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				t.record(batch[i], nil)
				continue
			}
			t.record(batch[i], kvs[0])
		}
	}
	return nil
}

// List returns every key under prefix, in key order, as of the snapshot,
// and guards the prefix as Count does: the commit fails if a key under it
// was created or changed since. The keys themselves are not guarded one by
// one, so a key deleted since goes unnoticed.
func (t *Txn) List(ctx context.Context, prefix string) ([]KV, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.s.cli.Get(ctx, prefix, opts...)
	if err != nil {
		return nil, unavailable(err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	t.prefixes = append(t.prefixes, prefix)
	return kvs(resp), nil
}

// Revision is the snapshot revision of the transaction's reads (0 before
// the first read).
func (t *Txn) Revision() int64 { return t.rev }

// Writes is the number of writes queued so far.
func (t *Txn) Writes() int { return len(t.ops) }

// Count returns the number of keys under prefix as of the snapshot and
// guards the prefix: the commit fails if a key under it was created or
// changed since (deletes are not detected, which suits counting against a
// quota and checking that nothing new refers to a resource).
func (t *Txn) Count(ctx context.Context, prefix string) (int64, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.s.cli.Get(ctx, prefix, opts...)
	if err != nil {
		return 0, unavailable(err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	t.prefixes = append(t.prefixes, prefix)
	return resp.Count, nil
}

// CountGuarded counts the keys under prefix as of the snapshot, as Count
// does, but makes the commit depend on guard alone instead of on every key
// under prefix: etcd compares one key, not thousands, so the cost of the
// commit does not grow with the prefix. It is for an index whose every
// writer bumps guard (Bump) in the transaction that adds or removes a key
// under prefix; a writer that does not breaks the guarantee.
func (t *Txn) CountGuarded(ctx context.Context, prefix, guard string) (int64, error) {
	if _, err := t.Guard(ctx, guard); err != nil {
		return 0, err
	}
	resp, err := t.s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(t.rev))
	if err != nil {
		return 0, unavailable(err)
	}
	return resp.Count, nil
}

// Bump queues a write of key with an empty value, which changes its
// ModRevision: the commit of every transaction that guarded key since
// (CountGuarded, Guard) fails.
func (t *Txn) Bump(key string) { t.PutRaw(key, "") }

// Guard makes the commit depend on key not having changed since the
// snapshot, without reading it into a message.
func (t *Txn) Guard(ctx context.Context, key string) (found bool, err error) {
	return t.Get(ctx, key, nil)
}

// Expect makes the commit depend on key still having the ModRevision
// modRev (0: the key must not exist), as if Get had seen it. It is for a
// key the caller read outside the transaction, for example in a Range, and
// does not read it again.
func (t *Txn) Expect(key string, modRev int64) { t.reads[key] = modRev }

// Put queues a write of msg at key.
func (t *Txn) Put(key string, msg proto.Message) {
	b, err := Encode(msg)
	if err != nil {
		t.err = errors.Join(t.err, err)
		return
	}
	t.ops = append(t.ops, clientv3.OpPut(key, string(b)))
}

// PutRaw queues a write of a raw value.
func (t *Txn) PutRaw(key, value string) { t.ops = append(t.ops, clientv3.OpPut(key, value)) }

// Delete queues a delete of key.
func (t *Txn) Delete(key string) { t.ops = append(t.ops, clientv3.OpDelete(key)) }

// DeletePrefix queues a delete of every key under prefix.
func (t *Txn) DeletePrefix(prefix string) {
	t.ops = append(t.ops, clientv3.OpDelete(prefix, clientv3.WithPrefix()))
}

// Commit applies the queued writes atomically if no guarded key changed. It
// returns the revision of the write.
func (t *Txn) Commit(ctx context.Context) (int64, error) {
	if t.err != nil {
		return 0, t.err
	}
	cmps := make([]clientv3.Cmp, 0, len(t.reads)+len(t.prefixes))
	for k, rev := range t.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	}
	for _, p := range t.prefixes {
		// Every key in the range (an empty range compares as one zero key)
		// must be older than the snapshot.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p), "<", t.rev+1).WithPrefix())
	}
	resp, err := t.s.cli.Txn(ctx).If(cmps...).Then(t.ops...).Commit()
	if err != nil {
		return 0, unavailable(err)
	}
	if !resp.Succeeded {
		return 0, ErrConflict
	}
	return resp.Header.Revision, nil
}

// ErrTooLarge is returned when etcd, or the gRPC limits in front of it,
// refuse a transaction for its number of operations or its size. Retrying
// cannot help, so it is not Unavailable.
var ErrTooLarge = apierr.ResourceExhausted(apierr.ReasonTransactionTooLarge,
	"the change is too large for one etcd transaction: change fewer resources per request, or raise etcd's --max-txn-ops and --max-request-bytes")

// unavailable maps etcd client errors: context errors pass through, a
// transaction over etcd's limits becomes ErrTooLarge, the rest become
// Unavailable so that clients retry instead of seeing Internal.
func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrRequestTooLarge) || status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	return fmt.Errorf("%w: %v", apierr.Unavailable(apierr.ReasonStoreUnavailable, "the config store is unavailable"), err)
}

// ModRevision returns the ModRevision a Get or Guard of key saw (0 for a
// missing or unread key).
func (t *Txn) ModRevision(key string) int64 { return t.reads[key] }
