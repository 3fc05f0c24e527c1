package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/controller/store"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
)

// sessionTTL is how long a node stays "connected" after its controller
// vanishes without closing the stream (the etcd lease TTL).
const sessionTTL = 10 * time.Second

// sessions records which nodes hold a config stream. Each controller keeps
// one etcd lease alive; a node's session key is bound to it, so the key goes
// when the stream ends (deleted) or when the controller dies (lease expiry).
// Node records (applied revision, last NACK) are status reports, written
// with plain puts by the controller that holds the node's stream.
type sessions struct {
	cli *clientv3.Client
	log *slog.Logger

	mu    sync.Mutex
	lease clientv3.LeaseID
	// renewed is closed and replaced whenever a new lease is granted: the
	// streams must write their sessions again under it.
	renewed chan struct{}
}

// leaseRenewed returns a channel closed at the next new lease.
func (s *sessions) leaseRenewed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.renewed == nil {
		s.renewed = make(chan struct{})
	}
	return s.renewed
}

// run keeps a lease alive until ctx ends, granting a new one whenever it
// is lost (etcd down longer than the TTL).
func (s *sessions) run(ctx context.Context) {
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		lease, err := s.cli.Grant(gctx, int64(sessionTTL/time.Second))
		cancel()
		if err != nil {
			s.log.Debug("session lease grant failed", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		ka, err := s.cli.KeepAlive(ctx, lease.ID)
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		s.mu.Lock()
		s.lease = lease.ID
		if s.renewed != nil {
			close(s.renewed)
		}
		s.renewed = make(chan struct{})
		s.mu.Unlock()
		for range ka {
		}
		s.mu.Lock()
		s.lease = 0
		s.mu.Unlock()
	}
}

func (s *sessions) leaseID() clientv3.LeaseID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

// open marks a node connected, under the stream's ID.
func (s *sessions) open(ctx context.Context, node, streamID string) error {
	lease := s.leaseID()
	if lease == 0 {
		return errNoLease
	}
	_, err := s.cli.Put(ctx, store.NodeSessionKey(node), streamID, clientv3.WithLease(lease))
	return err
}

// close removes a node's session if it is still this stream's.
func (s *sessions) close(node, streamID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	key := store.NodeSessionKey(node)
	_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", streamID)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		s.log.Debug("session close failed; the lease will expire it", "node", node, "err", err)
	}
}

// report writes a node's status record.
func (s *sessions) report(ctx context.Context, rec *storagev1.NodeRecord) error {
	b, err := store.Encode(rec)
	if err != nil {
		return err
	}
	_, err = s.cli.Put(ctx, store.NodeKey(rec.GetInfo().GetName()), string(b))
	return err
}

type sessionError string

func (e sessionError) Error() string { return string(e) }

const errNoLease = sessionError("no session lease yet (etcd unreachable?)")

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// nodeRecord is the status record the stream keeps for its node.
type nodeRecord struct {
	mu  sync.Mutex
	rec *storagev1.NodeRecord
	// sessMu serializes the stream's session writes with its close; closed
	// is set, under it, once the session is closed: later writes are
	// dropped, so a late ACK cannot mark a finished stream connected.
	sessMu sync.Mutex
	closed bool
}

func (r *nodeRecord) update(fn func(*storagev1.NodeRecord)) *storagev1.NodeRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r.rec)
	return proto.Clone(r.rec).(*storagev1.NodeRecord)
}
