package node

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/outpost-cdn/outpost/internal/names"
)

// Handshake refusals. Clients see the TLS alert unrecognized_name; the
// reasons feed metrics.
var (
	errNoSNI         = errors.New("handshake without SNI refused")
	errUnknownSNI    = errors.New("no accelerated domain for this SNI")
	errHTTPSDisabled = errors.New("HTTPS is not enabled for this domain")
)

// tlsConfig is Mozilla's "intermediate" profile: TLS 1.2 and 1.3, AEAD
// suites with forward secrecy, HTTP/2 and HTTP/1.1 by ALPN. Certificates
// come from the applied config on every handshake, so a new or replaced
// certificate takes effect at once, without touching open connections.
func (n *Node) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: n.getCertificate,
	}
}

// getCertificate picks the certificate by SNI: the exact accelerated name
// first, then the one-label wildcard above it. A handshake without SNI, or
// for a name no HTTPS domain serves, is refused with the alert
// unrecognized_name.
//
// An expired certificate is served all the same, as other CDNs and web
// servers do: the client decides (browsers warn, and a user may go on;
// a client with a skewed clock may still accept it), where refusing the
// handshake would fail every client alike. Each such handshake is counted
// (outpost_edge_tls_expired_certificate_handshakes_total) for alerting.
func (n *Node) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	sni := names.Normalize(hello.ServerName)
	var err error
	defer func() { n.metrics.handshake(err) }()
	if sni == "" {
		err = errNoSNI
		return nil, nil // see below
	}
	s := n.state.Load().lookup(sni)
	switch {
	case s == nil:
		err = errUnknownSNI
	case s.cert == nil:
		err = errHTTPSDisabled
	default:
		if time.Now().After(s.notAfter) {
			n.metrics.expiredHandshake(s.domain.GetName())
		}
		return s.cert, nil
	}
	// No certificate and no error: crypto/tls then finds no certificate
	// configured and sends unrecognized_name (RFC 6066 section 3), where an
	// error would send internal_error. The connection is closed without a
	// log line either way; the reason is counted above.
	return nil, nil
}
