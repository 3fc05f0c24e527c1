package scheduler

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/outpost-cdn/outpost/internal/grpcauth"
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

// domainStream keeps the table current from any of the controllers.
type domainStream struct {
	name     string
	conns    []*grpc.ClientConn
	table    atomic.Pointer[domainTable]
	ready    chan struct{} // closed at the first snapshot
	sawFirst bool
	// applied, if set, is called with each table the stream stored.
	applied func(*domainTable)
}

func newDomainStream(name, token string, controllers []string) (*domainStream, error) {
	s := &domainStream{name: name, ready: make(chan struct{})}
	s.table.Store(emptyTable)
	for _, addr := range controllers {
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: token}),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(512<<20)),
		)
		if err != nil {
			s.close()
			return nil, err
		}
		s.conns = append(s.conns, conn)
	}
	return s, nil
}

func (s *domainStream) close() {
	for _, c := range s.conns {
		c.Close()
	}
}

// run reconnects with jittered backoff until ctx ends.
func (s *domainStream) run(ctx context.Context, onErr func(error)) {
	if len(s.conns) == 0 {
		return
	}
	i := rand.IntN(len(s.conns))
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		got, err := s.once(ctx, s.conns[i%len(s.conns)])
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
		backoff = min(backoff*2, 15*time.Second)
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
