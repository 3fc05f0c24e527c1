package node

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/outpost-cdn/outpost/internal/grpcauth"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Version is reported to the controllers.
const Version = "0.1.0"

// Reconnect backoff: exponential from backoffMin to backoffMax, with full
// jitter, reset after a stream that delivered config.
const (
	backoffMin = 200 * time.Millisecond
	backoffMax = 15 * time.Second
)

// streamer keeps one config stream open to any of the controllers.
type streamer struct {
	n     *Node
	conns []*grpc.ClientConn

	mu  sync.Mutex
	out chan *outpostv1.StreamConfigRequest // the current stream's send queue; nil between streams
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

func newStreamer(n *Node) (*streamer, error) {
	s := &streamer{n: n}
	for _, addr := range n.cfg.Controllers {
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: n.cfg.Token}),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
			// A snapshot carries every domain, certificate and retained
			// purge: far more than gRPC's default 4 MiB at scale.
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxConfigMessage)),
		)
		if err != nil {
			s.close()
			return nil, err
		}
		s.conns = append(s.conns, conn)
	}
	return s, nil
}

func (s *streamer) close() {
	for _, c := range s.conns {
		c.Close()
	}
}

// run reconnects until ctx ends, moving to the next controller after each
// failure, starting from a random one so nodes spread over controllers.
func (s *streamer) run(ctx context.Context) {
	if len(s.conns) == 0 {
		s.n.log.Warn("no controllers configured: serving the persisted config only")
		return
	}
	i := rand.IntN(len(s.conns))
	backoff := backoffMin
	for ctx.Err() == nil {
		conn := s.conns[i%len(s.conns)]
		i++
		delivered, err := s.once(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		if delivered {
			backoff = backoffMin
		}
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoffMin/2
		s.n.log.Info("config stream ended; reconnecting", "controller", conn.Target(), "err", err, "retry_in", wait.Round(time.Millisecond))
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
