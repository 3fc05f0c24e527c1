package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/outpost-cdn/outpost/internal/clusterpki"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Version is reported to the controllers.
const Version = "0.1.0"

// Reconnect backoff: exponential from backoffMin to backoffMax, with full
// jitter, reset after a stream that delivered config.
const (
	backoffMin = 200 * time.Millisecond
	backoffMax = clusterpki.ReconnectMax
)

// streamer keeps one config stream open to any of the controllers, over
// mutual TLS with the node's member certificate (internal/clusterpki).
type streamer struct {
	n *Node
	// id is the node's member certificate; nil with no controllers.
	id *clusterpki.Identity

	mu  sync.Mutex
	out chan *outpostv1.StreamConfigRequest // the current stream's send queue; nil between streams
	// conns are the connections by controller, dialled lazily; gens the
	// certificate generation each was dialled with. A renewal leaves the
	// open stream on its connection; the next stream dials again.
	conns []*grpc.ClientConn
	gens  []uint64
}

// maxConfigMessage bounds one config message (a snapshot) the node accepts.
const maxConfigMessage = 512 << 20

// sendQueue bounds what waits to be sent on a stream; beyond it, task
// reports are dropped (the latest is sent again on the next stream).
const sendQueue = 256

// send queues a message on the current stream, if any, without blocking.
func (s *streamer) send(m *outpostv1.StreamConfigRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return
	}
	select {
	case s.out <- m:
	default:
	}
}

// newStreamer loads the node's member certificate from its data dir, or
// checks that it has a join token to get one: a node with controllers and
// neither does not start.
func newStreamer(n *Node) (*streamer, error) {
	cfg := n.cfg
	s := &streamer{n: n, conns: make([]*grpc.ClientConn, len(cfg.Controllers)), gens: make([]uint64, len(cfg.Controllers))}
	if len(cfg.Controllers) == 0 {
		return s, nil
	}
	id, err := clusterpki.NewIdentity(clusterpki.MemberConfig{
		Name: cfg.Name, Role: outpostv1.MemberRole_MEMBER_ROLE_NODE, Controllers: cfg.Controllers,
		JoinToken: cfg.JoinToken, CAFile: cfg.CAFile, CAPin: cfg.CAPin, Dir: cfg.DataDir, Logger: n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	s.id = id
	return s, nil
}

// MemberCertificate is the node's current member certificate: nil before
// it joined, or with no controllers.
func (n *Node) MemberCertificate() *x509.Certificate {
	if n.streamer == nil || n.streamer.id == nil {
		return nil
	}
	return n.streamer.id.Certificate()
}

// conn returns the connection to controller i, dialled with the current
// certificate (a connection dialled with an older one is closed first:
// no stream uses it between streams).
func (s *streamer) conn(i int) (*grpc.ClientConn, error) {
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
	// A snapshot carries every domain, certificate and retained purge:
	// far more than gRPC's default 4 MiB at scale.
	conn, err := grpc.NewClient(s.n.cfg.Controllers[i],
		append(clusterpki.StreamDialOptions(maxConfigMessage), grpc.WithTransportCredentials(s.id.Credentials()))...)
	if err != nil {
		return nil, err
	}
	s.conns[i], s.gens[i] = conn, gen
	return conn, nil
}

func (s *streamer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if c != nil {
			c.Close()
		}
	}
}

// run reconnects until ctx ends, moving to the next controller after each
// failure, starting from a random one so nodes spread over controllers.
// It joins the cluster first if the node has no certificate, and renews
// the certificate in the background once it has one.
func (s *streamer) run(ctx context.Context) {
	if s.id == nil {
		s.n.log.Warn("no controllers configured: serving the persisted config only")
		return
	}
	var renewer sync.WaitGroup
	defer renewer.Wait()
	renewing := false
	i := rand.IntN(len(s.conns))
	backoff := backoffMin
	for ctx.Err() == nil {
		var (
			delivered bool
			err       error
			target    = s.n.cfg.Controllers[i%len(s.conns)]
		)
		if err = s.id.Ensure(ctx); err == nil {
			if !renewing {
				renewing = true
				renewer.Add(1)
				go func() { defer renewer.Done(); s.id.Run(ctx) }()
			}
			var conn *grpc.ClientConn
			if conn, err = s.conn(i % len(s.conns)); err == nil {
				delivered, err = s.once(ctx, conn)
			}
		}
		i++
		if ctx.Err() != nil {
			return
		}
		if delivered {
			backoff = backoffMin
		}
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoffMin/2
		s.n.log.Info("config stream ended; reconnecting", "controller", target, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, backoffMax)
	}
}

// once runs one stream. delivered reports whether any config arrived.
func (s *streamer) once(ctx context.Context, conn *grpc.ClientConn) (delivered bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := outpostv1.NewConfigDiscoveryServiceClient(conn).StreamConfig(sctx)
	if err != nil {
		return false, err
	}
	n := s.n
	cfg := n.cfg
	err = stream.Send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Subscribe{Subscribe: &outpostv1.Subscribe{
		Node: &outpostv1.NodeInfo{
			Name:          cfg.Name,
			Region:        cfg.Region,
			Location:      &outpostv1.Location{Latitude: cfg.Latitude, Longitude: cfg.Longitude},
			HttpAddress:   n.publicHTTP(),
			HttpsAddress:  n.publicHTTPS(),
			Version:       Version,
			GossipAddress: n.gossipAdvertise(),
		},
		LastAppliedRevision: n.Revision(),
	}}})
	if err != nil {
		return false, err
	}
	// One goroutine sends (ACKs, NACKs, task reports); this one receives.
	out := make(chan *outpostv1.StreamConfigRequest, sendQueue)
	s.mu.Lock()
	s.out = out
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.out = nil
		s.mu.Unlock()
	}()
	sendErr := make(chan error, 1)
	go func() {
		for {
			select {
			case m := <-out:
				if err := stream.Send(m); err != nil {
					sendErr <- err
					cancel()
					return
				}
			case <-sctx.Done():
				return
			}
		}
	}()
	var d *desired
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return delivered, errors.New("controller closed the stream")
		}
		if err != nil {
			return delivered, err
		}
		if !msg.GetSnapshot() && d == nil {
			return delivered, errors.New("protocol error: a change before the first snapshot")
		}
		d = d.merge(msg)
		reply := &outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Ack{Ack: &outpostv1.Ack{Revision: msg.GetRevision()}}}
		first := msg.GetSnapshot() && d.revision == msg.GetRevision() && !delivered
		if err := n.apply(ctx, d); err != nil {
			n.log.Warn("refused config; serving the last good one", "revision", msg.GetRevision(), "err", err)
			reply = &outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Nack{Nack: &outpostv1.ConfigNack{Revision: msg.GetRevision(), Error: err.Error()}}}
		} else if msg.GetSnapshot() {
			n.serveCachedFromBefore(true) // the purges missed while down are applied
		}
		delivered = true
		select {
		case out <- reply:
		case err := <-sendErr:
			return delivered, err
		case <-sctx.Done():
			return delivered, sctx.Err()
		}
		if first {
			for _, r := range n.tasks.pending() {
				s.send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_TaskReport{TaskReport: r}})
			}
		}
	}
}
