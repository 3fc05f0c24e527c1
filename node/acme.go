package node

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// ACME HTTP-01 (RFC 8555 8.3). While the controller obtains a domain's free
// certificate, the config stream carries the CA's challenge: a token and
// its key authorization. The CA fetches
//
//	http://<domain>/.well-known/acme-challenge/<token>
//
// from whichever node the domain's DNS leads it to, so every node answers
// it, ahead of forced redirects, the cache and the origin.

// acmeChallengePath is the path prefix of HTTP-01 challenges.
const acmeChallengePath = "/.well-known/acme-challenge/"

// acmeTokenPattern is a well-formed token (base64url, RFC 8555 8.1).
var acmeTokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// buildChallenges keeps the challenges the node can serve: a malformed one
// is left out rather than refusing the whole config, since it concerns one
// attempt of one domain's certificate.
func buildChallenges(in map[string]*outpostv1.AcmeChallenge) map[string]*outpostv1.AcmeChallenge {
	out := make(map[string]*outpostv1.AcmeChallenge, len(in))
	for token, ch := range in {
		if !acmeTokenPattern.MatchString(token) || ch.GetKeyAuthorization() == "" || names.Normalize(ch.GetDomain()) == "" {
			continue
		}
		out[token] = ch
	}
	return out
}

// serveACMEChallenge answers a request for an HTTP-01 challenge of site s,
// and reports whether it did. It answers the token's key authorization as
// text/plain when the challenge is pending for this domain. For a domain
// that asked for a free certificate, it also answers every other request
// under the challenge path itself, with 404 (or 405 for a method other
// than GET or HEAD), so that they never reach the cache or the origin.
// Other domains' requests under the path go on to the origin as before: a
// customer may run ACME on its origin for a certificate it uploads.
func (n *Node) serveACMEChallenge(w http.ResponseWriter, r *http.Request, st *state, s *site) bool {
	token, ok := strings.CutPrefix(r.URL.Path, acmeChallengePath)
	if !ok {
		return false
	}
	ch := st.challenges[token]
	if ch != nil && names.Normalize(ch.GetDomain()) != s.domain.GetName() {
		ch = nil // another domain's challenge
	}
	if ch == nil && s.domain.GetHttps().GetFree() == nil {
		return false
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed\n", http.StatusMethodNotAllowed)
		return true
	}
	if ch == nil {
		http.Error(w, "no such ACME challenge\n", http.StatusNotFound)
		return true
	}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(ch.GetKeyAuthorization())))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte(ch.GetKeyAuthorization()))
	}
	return true
}
