package scheduler

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/outpost-cdn/outpost/internal/clusterpki"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// domainTable is the scheduler's view of the accelerated domains: what it
// needs to answer for a name (its scope), by name and by CNAME. It is
// immutable; the config stream swaps in a new one.
type domainTable struct {
	revision int64
	byName   map[string]*outpostv1.Domain
	byCNAME  map[string]*outpostv1.Domain
	// draining are the nodes an operator drained.
	draining map[string]bool
	// gossipKeys is the controller's gossip keyring (nil: none set).
	gossipKeys [][]byte
	// gossipSeeds are join addresses from the last snapshot.
	gossipSeeds []string
}

var emptyTable = &domainTable{byName: map[string]*outpostv1.Domain{}, byCNAME: map[string]*outpostv1.Domain{}, draining: map[string]bool{}}

// lookup finds the domain for a name: an accelerated name (exact, then the
// wildcard above it) or a CNAME target.
func (t *domainTable) lookup(name string) *outpostv1.Domain {
	n := names.Normalize(name)
	if d, ok := t.byCNAME[n]; ok {
		return d
	}
	if d, ok := t.byName[n]; ok {
		return d
	}
	if w := names.WildcardOf(n); w != "" {
		return t.byName[w]
	}
	return nil
}

// merge applies a stream message, returning a new table.
func (t *domainTable) merge(msg *outpostv1.StreamConfigResponse) *domainTable {
	out := &domainTable{revision: msg.GetRevision(), byName: map[string]*outpostv1.Domain{}, byCNAME: map[string]*outpostv1.Domain{}, draining: map[string]bool{}}
	out.gossipKeys = msg.GetGossipKeyring().GetKeys()
	out.gossipSeeds = msg.GetGossipSeeds()
	if !msg.GetSnapshot() {
		out.gossipSeeds = t.gossipSeeds
		if msg.GetGossipKeyring() == nil {
			out.gossipKeys = t.gossipKeys
		}
		for k, v := range t.byName {
			out.byName[k] = v
		}
		for k := range t.draining {
			out.draining[k] = true
		}
	}
	for _, n := range msg.GetDrainingNodes() {
		out.draining[n] = true
	}
	for _, n := range msg.GetUndrainedNodes() {
		delete(out.draining, n)
	}
	for _, d := range msg.GetDomains() {
		out.byName[d.GetName()] = d
	}
	for _, n := range msg.GetRemovedDomains() {
		delete(out.byName, n)
	}
	for name, d := range out.byName {
		if d.GetStatus() == outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE {
			delete(out.byName, name)
			continue
		}
		out.byCNAME[strings.ToLower(d.GetCname())] = d
	}
	return out
}

// domainStream keeps the table current from any of the controllers, over
// mutual TLS with the scheduler's member certificate.
type domainStream struct {
	name        string
	controllers []string
	id          *clusterpki.Identity
	// conns are dialled lazily, and again after a certificate renewal
	// (gens: the certificate generation each was dialled with).
	mu       sync.Mutex
	conns    []*grpc.ClientConn
	gens     []uint64
	table    atomic.Pointer[domainTable]
	ready    chan struct{} // closed at the first snapshot
	sawFirst bool
	// applied, if set, is called with each table the stream stored.
	applied func(*domainTable)
}

// newDomainStream streams from controllers as the member id.
func newDomainStream(name string, id *clusterpki.Identity, controllers []string) *domainStream {
	s := &domainStream{name: name, controllers: controllers, id: id, ready: make(chan struct{}),
		conns: make([]*grpc.ClientConn, len(controllers)), gens: make([]uint64, len(controllers))}
	s.table.Store(emptyTable)
	return s
}

// conn returns the connection to controller i, dialled with the current
// certificate.
func (s *domainStream) conn(i int) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.id.Generation()
	if c := s.conns[i]; c != nil && s.gens[i] == gen {
		return c, nil
	}
	if s.conns[i] != nil {
		s.conns[i].Close()
		s.conns[i] = nil
	}
	conn, err := grpc.NewClient(s.controllers[i],
		append(clusterpki.StreamDialOptions(512<<20), grpc.WithTransportCredentials(s.id.Credentials()))...)
	if err != nil {
		return nil, err
	}
	s.conns[i], s.gens[i] = conn, gen
	return conn, nil
}

func (s *domainStream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if c != nil {
			c.Close()
		}
	}
}

// run joins the cluster if the scheduler has no certificate yet, renews it
// in the background, and reconnects with jittered backoff until ctx ends.
func (s *domainStream) run(ctx context.Context, onErr func(error)) {
	if len(s.conns) == 0 {
		return
	}
	var renewer sync.WaitGroup
	defer renewer.Wait()
	renewing := false
	i := rand.IntN(len(s.conns))
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		var got bool
		err := s.id.Ensure(ctx)
		if err == nil {
			if !renewing {
				renewing = true
				renewer.Add(1)
				go func() { defer renewer.Done(); s.id.Run(ctx) }()
			}
			var conn *grpc.ClientConn
			if conn, err = s.conn(i % len(s.conns)); err == nil {
				got, err = s.once(ctx, conn)
			}
		}
		i++
		if ctx.Err() != nil {
			return
		}
		onErr(err)
		if got {
			backoff = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(rand.Int64N(int64(backoff))) + 100*time.Millisecond):
		}
		backoff = min(backoff*2, clusterpki.ReconnectMax)
	}
}

func (s *domainStream) once(ctx context.Context, conn *grpc.ClientConn) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := outpostv1.NewConfigDiscoveryServiceClient(conn).StreamConfig(sctx)
	if err != nil {
		return false, err
	}
	if err := stream.Send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Subscribe{Subscribe: &outpostv1.Subscribe{
		Node: &outpostv1.NodeInfo{Name: s.name, Role: "scheduler"},
	}}}); err != nil {
		return false, err
	}
	got := false
	var t *domainTable
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, errors.New("controller closed the stream")
		}
		if err != nil {
			return got, err
		}
		if t == nil && !msg.GetSnapshot() {
			return got, errors.New("protocol error: a change before the first snapshot")
		}
		if t == nil {
			t = emptyTable
		}
		t = t.merge(msg)
		s.table.Store(t)
		if s.applied != nil {
			s.applied(t)
		}
		got = true
		if !s.sawFirst {
			s.sawFirst = true
			close(s.ready)
		}
		_ = stream.Send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Ack{Ack: &outpostv1.Ack{Revision: msg.GetRevision()}}})
	}
}
