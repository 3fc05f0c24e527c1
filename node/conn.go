package node

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// handshakeTimeout bounds a client's TLS handshake.
const handshakeTimeout = 10 * time.Second

// edgeListener wraps accepted connections in edgeConn. With a TLS config it
// also terminates TLS itself, so that the decrypted HTTP/1 stream passes the
// framing check before Go's server parses it; HTTP/2 negotiated by ALPN is
// then served by the server's prior-knowledge HTTP/2 support.
type edgeListener struct {
	net.Listener
	tls *tls.Config
}

func (l *edgeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ec := &edgeConn{Conn: c, framing: &framing{}}
	if l.tls != nil {
		ec.tlsConn = tls.Server(c, l.tls)
		ec.Conn = ec.tlsConn
	}
	return ec, nil
}

// edgeConn is one client connection. For TLS the handshake runs on first
// use, in the server's connection goroutine, never in the accept loop.
type edgeConn struct {
	net.Conn
	tlsConn  *tls.Conn // nil on the plain HTTP port
	once     sync.Once
	hsErr    error
	state    tls.ConnectionState
	framing  *framing // nil when the connection speaks HTTP/2
	requests atomic.Int64
	// replay holds bytes the fast path read but handed to net/http
	// (fastpath.go): Read returns them first. The framing check has seen
	// them already.
	replay []byte
}

func (c *edgeConn) handshake() {
	c.once.Do(func() {
		if c.tlsConn == nil {
			return
		}
		_ = c.tlsConn.SetDeadline(time.Now().Add(handshakeTimeout))
		c.hsErr = c.tlsConn.HandshakeContext(context.Background())
		_ = c.tlsConn.SetDeadline(time.Time{})
		c.state = c.tlsConn.ConnectionState()
		if c.state.NegotiatedProtocol == "h2" {
			c.framing = nil
		}
	})
}

func (c *edgeConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	c.handshake()
	if c.hsErr != nil {
		return 0, c.hsErr
	}
	n, err := c.Conn.Read(p)
	if f := c.framing; f != nil && n > 0 {
		f.Feed(p[:n])
	}
	return n, err
}

func (c *edgeConn) Write(p []byte) (int, error) {
	c.handshake()
	if c.hsErr != nil {
		return 0, c.hsErr
	}
	return c.Conn.Write(p)
}

type connKey struct{}

// connContext makes the connection reachable from its requests.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if ec, ok := c.(*edgeConn); ok {
		return context.WithValue(ctx, connKey{}, ec)
	}
	return ctx
}

// clientTLS is the TLS state of a request's connection, or nil for plain
// HTTP. (r.TLS is nil here: the node terminates TLS itself.)
func clientTLS(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	if ec, ok := r.Context().Value(connKey{}).(*edgeConn); ok && ec.tlsConn != nil {
		return &ec.state
	}
	return nil
}

// framingVerdict says why an HTTP/1 request must be refused for its raw
// framing, or "". It must be called once per request, in order.
func framingVerdict(r *http.Request) string {
	ec, ok := r.Context().Value(connKey{}).(*edgeConn)
	if !ok || r.ProtoMajor != 1 {
		return ""
	}
	k := int(ec.requests.Add(1) - 1)
	if f := ec.framing; f != nil {
		return f.Verdict(k)
	}
	return ""
}
