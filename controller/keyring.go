package controller

// The keyring service: which key-encryption keys (KEKs) wrap the sealed
// secrets in etcd, and re-wrapping them with the primary KEK after a
// rotation, on request and in the background.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/outpost-cdn/outpost/controller/store"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// keyringService implements outpostv1.KeyringServiceServer.
type keyringService struct {
	outpostv1.UnimplementedKeyringServiceServer
	c *Controller
}

var _ outpostv1.KeyringServiceServer = (*keyringService)(nil)

// sealedRecord is a kind of etcd record that holds sealed secrets: every key
// under prefix, or the one key key.
type sealedRecord struct {
	prefix string
	key    string
	newMsg func() proto.Message
}

// sealedRecords lists every record the controllers keep in etcd with a
// storage.v1.SealedSecret in it. A new record type with a secret must be
// added here, or its secrets are neither counted nor re-wrapped and a
// rotation would lose them; TestSealedRecordsCoverStorage checks the list
// against storage.proto.
var sealedRecords = []sealedRecord{
	{prefix: store.CertsPrefix(), newMsg: func() proto.Message { return &storagev1.StoredCertificate{} }},
	{prefix: store.CsrsPrefix(), newMsg: func() proto.Message { return &storagev1.StoredCsr{} }},
	{key: store.GossipKeyringKey(), newMsg: func() proto.Message { return &storagev1.StoredGossipKeyring{} }},
	{key: store.AcmeAccountKey(), newMsg: func() proto.Message { return &storagev1.AcmeAccount{} }},
	{key: store.ClusterCAKey(), newMsg: func() proto.Message { return &storagev1.ClusterCa{} }},
}

// sealedPage is how many records a scan reads at a time, and the most a
// re-wrap writes in one transaction (see also maxRewrapTxnBytes). One
// re-wrap transaction is one config revision for the edge nodes.
const sealedPage = 64

// rewrapAttempts bounds the re-reads of one record whose re-wrap lost a
// race with another write.
const rewrapAttempts = 5

// defaultRewrapInterval is how often a controller re-wraps in the background.
const defaultRewrapInterval = 10 * time.Minute

// sealedIn returns every non-empty SealedSecret in m, at any depth. They are
// m's own messages: changing them changes m.
func sealedIn(m proto.Message) []*storagev1.SealedSecret {
	var out []*storagev1.SealedSecret
	var walk func(protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if s, ok := m.Interface().(*storagev1.SealedSecret); ok {
			if s.GetKekId() != "" || len(s.GetWrappedDataKey()) > 0 || len(s.GetCiphertext()) > 0 {
				out = append(out, s)
			}
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsMap():
				if fd.MapValue().Message() != nil {
					v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
						walk(mv.Message())
						return true
					})
				}
			case fd.Message() == nil:
			case fd.IsList():
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			default:
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
	return out
}

// scanSealed calls fn for every record that may hold sealed secrets, a page
// of records at a time, in key order. A record is decoded strictly (strict
// true: unknown fields are an error) for re-wrapping, which writes it back
// and must not drop what a newer controller wrote; else leniently. A record
// that does not decode is passed with its error.
func (c *Controller) scanSealed(ctx context.Context, strict bool, fn func(page []sealedKV) error) error {
	for _, r := range sealedRecords {
		if r.key != "" {
			kv, found, err := c.store.GetKV(ctx, r.key)
			if err != nil {
				return err
			}
			if found {
				if err := fn([]sealedKV{decodeSealed(r, kv, strict)}); err != nil {
					return err
				}
			}
			continue
		}
		after := ""
		for {
			kvs, _, err := c.store.Range(ctx, r.prefix, after, sealedPage)
			if err != nil {
				return err
			}
			page := make([]sealedKV, 0, len(kvs))
			for _, kv := range kvs {
				page = append(page, decodeSealed(r, kv, strict))
			}
			if len(page) > 0 {
				if err := fn(page); err != nil {
					return err
				}
			}
			if len(kvs) < sealedPage {
				break
			}
			after = kvs[len(kvs)-1].Key
		}
	}
	return nil
}

// sealedKV is one record of a scan.
type sealedKV struct {
	kv      store.KV
	msg     proto.Message
	secrets []*storagev1.SealedSecret
	err     error // the record does not decode
}

var strictJSON = protojson.UnmarshalOptions{}

func decodeSealed(r sealedRecord, kv store.KV, strict bool) sealedKV {
	msg := r.newMsg()
	var err error
	if strict {
		err = strictJSON.Unmarshal(kv.Value, msg)
	} else {
		err = store.Decode(kv, msg)
	}
	if err != nil {
		// The error names the key, never the value.
		return sealedKV{kv: kv, err: fmt.Errorf("decode %s: %w", kv.Key, err)}
	}
	return sealedKV{kv: kv, msg: msg, secrets: sealedIn(msg)}
}

func (s *keyringService) GetKeyringStatus(ctx context.Context, _ *outpostv1.GetKeyringStatusRequest) (*outpostv1.GetKeyringStatusResponse, error) {
	c := s.c
	counts := map[string]uint32{}
	err := c.scanSealed(ctx, false, func(page []sealedKV) error {
		for _, r := range page {
			if r.err != nil {
				c.log.Error("keyring status: a record does not decode", "key", r.kv.Key, "err", r.err)
				continue
			}
			for _, sec := range r.secrets {
				counts[sec.GetKekId()]++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keyringStatus(c.sealer.PrimaryKeyID(), c.sealer.KeyIDs(), counts), nil
}

// keyringStatus lists this controller's KEKs in keyring order, primary
// first, even those that wrap nothing, then the unknown KEKs that wrap
// secrets, by ID.
func keyringStatus(primary string, held []string, counts map[string]uint32) *outpostv1.GetKeyringStatusResponse {
	resp := &outpostv1.GetKeyringStatusResponse{PrimaryKekId: primary}
	for _, id := range held {
		resp.Usage = append(resp.Usage, &outpostv1.KekUsage{KekId: id, Secrets: counts[id], Known: true})
	}
	var unknown []string
	for id := range counts {
		if !slices.Contains(held, id) {
			unknown = append(unknown, id)
		}
	}
	sort.Strings(unknown)
	for _, id := range unknown {
		resp.Usage = append(resp.Usage, &outpostv1.KekUsage{KekId: id, Secrets: counts[id]})
	}
	return resp
}

func (s *keyringService) RewrapSecrets(ctx context.Context, _ *outpostv1.RewrapSecretsRequest) (*outpostv1.RewrapSecretsResponse, error) {
	res, err := s.c.rewrapAll(ctx)
	if err != nil {
		return nil, err
	}
	if res.GetRewrapped() > 0 || len(res.GetFailedKeys()) > 0 {
		s.c.logRewrap("re-wrap of sealed secrets", res)
	}
	return res, nil
}

// logRewrap logs a re-wrap run: its counts and the first etcd keys it
// could not re-wrap (never a value), at warning level when there are any.
func (c *Controller) logRewrap(msg string, res *outpostv1.RewrapSecretsResponse) {
	attrs := []any{"primary_kek_id", c.sealer.PrimaryKeyID(), "rewrapped", res.GetRewrapped(),
		"already_current", res.GetAlreadyCurrent(), "failed", len(res.GetFailedKeys())}
	f := res.GetFailedKeys()
	if len(f) == 0 {
		c.log.Info(msg, attrs...)
		return
	}
	attrs = append(attrs, "failed_keys", f[:min(len(f), 10)])
	c.log.Warn(msg+": some were not re-wrapped (a KEK not in this keyring, or a record that does not decode or kept changing; debug logs say which)", attrs...)
}

// rewrapAll re-wraps every sealed secret in etcd that is not under the
// primary KEK. Each write is guarded by the ModRevision of the record it
// read, so a concurrent change of the record (an edit, a delete, or
// another controller's re-wrap) is never overwritten: the record is read
// again and re-wrapped from what it holds now. Only the wrapped data keys
// change; the ciphertexts stay as they are.
func (c *Controller) rewrapAll(ctx context.Context) (*outpostv1.RewrapSecretsResponse, error) {
	res := &outpostv1.RewrapSecretsResponse{}
	err := c.scanSealed(ctx, true, func(page []sealedKV) error {
		var b rewrapBatch
		for _, r := range page {
			n, current, ok := c.rewrapRecord(ctx, r)
			switch {
			case !ok:
				res.FailedKeys = append(res.FailedKeys, r.kv.Key)
				continue
			case n == 0:
				res.AlreadyCurrent += current
				continue
			}
			b.records = append(b.records, r)
			b.rewrapped += n
			b.current += current
			b.bytes += len(r.kv.Value)
			if b.bytes >= maxRewrapTxnBytes {
				if err := c.commitRewrap(ctx, b, res); err != nil {
					return err
				}
				b = rewrapBatch{}
			}
		}
		return c.commitRewrap(ctx, b, res)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// maxRewrapTxnBytes bounds the values one re-wrap transaction writes, well
// under etcd's default request limit (1.5 MiB): certificate chains vary in
// size.
const maxRewrapTxnBytes = 512 << 10

// rewrapBatch is records re-wrapped in memory, to be written in one
// transaction, with their counts.
type rewrapBatch struct {
	records            []sealedKV
	rewrapped, current uint32
	bytes              int
}

// commitRewrap writes a batch in one transaction guarded by the
// ModRevision each record was read at, and counts it into res. If one of
// them changed since, it goes through the batch one record at a time, each
// read afresh.
func (c *Controller) commitRewrap(ctx context.Context, b rewrapBatch, res *outpostv1.RewrapSecretsResponse) error {
	if len(b.records) == 0 {
		return nil
	}
	t := c.store.Begin()
	keys := make([]string, 0, len(b.records))
	for _, r := range b.records {
		t.Expect(r.kv.Key, r.kv.ModRevision)
		t.Put(r.kv.Key, r.msg)
		keys = append(keys, r.kv.Key)
	}
	c.beforeRewrapCommit(keys)
	_, err := t.Commit(ctx)
	switch {
	case err == nil:
		res.Rewrapped += b.rewrapped
		res.AlreadyCurrent += b.current
		return nil
	case !errors.Is(err, store.ErrConflict):
		return err
	}
	for _, key := range keys {
		if err := c.rewrapOne(ctx, key, res); err != nil {
			return err
		}
	}
	return nil
}

// rewrapRecord re-wraps, in r.msg, the secrets of one record that are not
// under the primary KEK. It returns how many it re-wrapped and how many
// were under the primary already, and ok=false when the record cannot be
// written back: it does not decode, or a secret's KEK is unknown here.
func (c *Controller) rewrapRecord(ctx context.Context, r sealedKV) (rewrapped, current uint32, ok bool) {
	if r.err != nil {
		// Per record at debug level: the run's summary says how many.
		c.log.Debug("re-wrap: a record does not decode; it is left as it is", "key", r.kv.Key, "err", r.err)
		return 0, 0, false
	}
	for _, sec := range r.secrets {
		if !c.sealer.NeedsRewrap(sec) {
			current++
			continue
		}
		re, err := c.sealer.Rewrap(ctx, sec)
		if err != nil {
			// Unknown KEK, or a damaged wrapped key. The error names
			// the KEK, never key bytes.
			c.log.Debug("re-wrap: cannot open a sealed secret's data key", "key", r.kv.Key, "kek_id", sec.GetKekId(), "err", err)
			return 0, 0, false
		}
		sec.KekId, sec.WrappedDataKey = re.GetKekId(), re.GetWrappedDataKey()
		rewrapped++
	}
	return rewrapped, current, true
}

// rewrapOne re-wraps one record read afresh, retrying when another write
// changes it in between.
func (c *Controller) rewrapOne(ctx context.Context, key string, res *outpostv1.RewrapSecretsResponse) error {
	var rec sealedRecord
	for _, r := range sealedRecords {
		if key == r.key || r.prefix != "" && strings.HasPrefix(key, r.prefix) {
			rec = r
			break
		}
	}
	for range rewrapAttempts {
		kv, found, err := c.store.GetKV(ctx, key)
		if err != nil {
			return err
		}
		if !found {
			return nil // deleted meanwhile: nothing to re-wrap
		}
		r := decodeSealed(rec, kv, true)
		n, current, ok := c.rewrapRecord(ctx, r)
		switch {
		case !ok:
			res.FailedKeys = append(res.FailedKeys, key)
			return nil
		case n == 0:
			res.AlreadyCurrent += current // re-wrapped by someone else, or new
			return nil
		}
		t := c.store.Begin()
		t.Expect(key, kv.ModRevision)
		t.Put(key, r.msg)
		c.beforeRewrapCommit([]string{key})
		if _, err := t.Commit(ctx); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		res.Rewrapped += n
		res.AlreadyCurrent += current
		return nil
	}
	c.log.Warn("re-wrap: the record kept changing; it is left for the next run", "key", key)
	res.FailedKeys = append(res.FailedKeys, key)
	return nil
}

// beforeRewrapCommit runs the test hook Controller.rewrapHook, if set,
// before a re-wrap transaction commits, with the keys it writes.
func (c *Controller) beforeRewrapCommit(keys []string) {
	if h := c.rewrapHook.Load(); h != nil {
		(*h)(keys)
	}
}

// runRewrap re-wraps in the background: at start, then every
// RewrapInterval (with up to a tenth of jitter, so that controllers
// started together spread out). Every controller runs it; one that finds
// nothing to do costs a scan. Concurrent runs are safe: every write is
// guarded. With a keyring of one key there is nothing it could re-wrap,
// and it does not run.
func (c *Controller) runRewrap(ctx context.Context) {
	interval := c.cfg.RewrapInterval
	if interval < 0 || len(c.sealer.KeyIDs()) < 2 {
		return
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, max(interval, time.Minute))
		res, err := c.rewrapAll(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			c.log.Warn("background re-wrap failed; it will run again", "err", err, "in", interval)
		case res.GetRewrapped() > 0 || len(res.GetFailedKeys()) > 0:
			c.logRewrap("background re-wrap of sealed secrets", res)
		}
		wait := interval + rand.N(interval/10+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
