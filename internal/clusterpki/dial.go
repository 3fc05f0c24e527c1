package clusterpki

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"
)

// ReconnectMax bounds the wait between a member's attempts to open its
// config stream again (the members' reconnect loops back off
// exponentially with full jitter up to it). A member that was cut off
// from the controllers, or whose controllers were all down, streams again
// within about this long of the heal; the cost is one TLS dial per member
// per ReconnectMax while no controller answers, which a controller handles
// for thousands of members.
const ReconnectMax = 2 * time.Second

// StreamDialOptions are the gRPC options of a member's connection to a
// controller, besides its credentials: keepalives that notice a dead
// controller within 20 s, gRPC's own connection backoff held to
// ReconnectMax (its default grows to two minutes between attempts, and
// fails every new stream with the last dial error meanwhile), and room for
// a config snapshot of maxMessage bytes.
func StreamDialOptions(maxMessage int) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: ReconnectMax},
			MinConnectTimeout: ReconnectMax,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)),
	}
}
