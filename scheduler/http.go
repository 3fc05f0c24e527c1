package scheduler

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/outpost-cdn/outpost/internal/names"
)

// The HTTP mode, as Apache Traffic Router's HTTP routing: a client that
// reaches the scheduler over HTTP (the domain's DNS pointing at it) is
// redirected with 302 to the nearest node, under the name
// "<node>.<domain CNAME>", which the scheduler's DNS answers with that
// node's address and which edge nodes serve as the domain itself. Only
// plain HTTP, and only for non-wildcard domains (a redirect to the CNAME
// would lose the client's subdomain).

// startHTTP serves the redirects on addr.
func (s *Scheduler) startHTTP(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.httpLis = l
	s.httpSrv = &http.Server{Handler: http.HandlerFunc(s.redirect), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.httpSrv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("scheduler HTTP", "err", err)
		}
	}()
	return nil
}

// HTTPAddr is the bound address of the HTTP mode ("" when off).
func (s *Scheduler) HTTPAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

func (s *Scheduler) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap()
	}
	d, _, cands, err := s.route(host, client, 1)
	switch {
	case err != nil || names.IsWildcard(d.GetName()):
		http.Error(w, "no accelerated domain here\n", http.StatusNotFound)
		return
	case len(cands) == 0:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "no edge node can serve this now\n", http.StatusServiceUnavailable)
		return
	}
	n := cands[0].Node
	target := "http://" + strings.ToLower(n.Name) + "." + d.GetCname()
	if _, port, err := net.SplitHostPort(n.HTTPAddress); err == nil && port != "80" {
		target += ":" + port
	}
	w.Header().Set("Location", target+r.URL.RequestURI())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// nodeAddress answers DNS for "<node>.<cname>": the named node's address,
// if that node is alive and serves the CNAME's domain.
func (s *Scheduler) nodeAddress(qname string) (netip.Addr, bool) {
	label, cname, ok := strings.Cut(names.Normalize(qname), ".")
	if !ok || s.domains == nil {
		return netip.Addr{}, false
	}
	if d := s.domains.table.Load().byCNAME[cname]; d == nil {
		return netip.Addr{}, false
	}
	for _, n := range s.nodes() {
		if strings.EqualFold(n.Name, label) && n.Healthy {
			return hostIP(n.HTTPAddress)
		}
	}
	return netip.Addr{}, false
}
