package devcluster

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"syscall"
)

const loopback = "127.0.0.1"

// plan is the listen address of every service. A port of 0 means any free
// port.
type plan struct {
	controller, etcdClient, etcdPeer string
	schedGRPC, schedDNS, schedGossip string
	originHTTP, originHTTPS          string
	acmeDir, acmeDNS                 string
	nodeHTTP, nodeHTTPS              []string
}

// listener is one address the cluster will listen on, with what to tell the
// user when it is taken.
type listener struct {
	what, addr, flag string
	udp              bool
}

func makePlan(cfg *Config) *plan {
	base := func(off int) string {
		if cfg.BasePort == 0 {
			return net.JoinHostPort(loopback, "0")
		}
		return net.JoinHostPort(loopback, strconv.Itoa(cfg.BasePort+off))
	}
	p := &plan{
		controller:  base(offController),
		etcdClient:  base(offEtcdClient),
		etcdPeer:    base(offEtcdPeer),
		schedGRPC:   base(offSchedGRPC),
		schedDNS:    base(offSchedDNS),
		schedGossip: base(offSchedGossip),
		originHTTP:  base(offOriginHTTP),
		originHTTPS: base(offOriginHTTPS),
		acmeDir:     base(offAcmeDir),
		acmeDNS:     base(offAcmeDNS),
	}
	for _, ip := range cfg.NodeIPs {
		p.nodeHTTP = append(p.nodeHTTP, net.JoinHostPort(ip, strconv.Itoa(cfg.NodeHTTPPort)))
		p.nodeHTTPS = append(p.nodeHTTPS, net.JoinHostPort(ip, strconv.Itoa(cfg.NodeHTTPSPort)))
	}
	return p
}

func (p *plan) listeners() []listener {
	ls := []listener{
		{"controller", p.controller, "--base-port", false},
		{"etcd client", p.etcdClient, "--base-port", false},
		{"etcd peer", p.etcdPeer, "--base-port", false},
		{"scheduler gRPC", p.schedGRPC, "--base-port", false},
		{"scheduler DNS (TCP)", p.schedDNS, "--base-port", false},
		{"scheduler DNS (UDP)", p.schedDNS, "--base-port", true},
		{"scheduler gossip (TCP)", p.schedGossip, "--base-port", false},
		{"scheduler gossip (UDP)", p.schedGossip, "--base-port", true},
		{"demo origin HTTP", p.originHTTP, "--base-port", false},
		{"demo origin HTTPS", p.originHTTPS, "--base-port", false},
		{"ACME CA directory (Pebble)", p.acmeDir, "--base-port", false},
		{"ACME CA DNS (Pebble, TCP)", p.acmeDNS, "--base-port", false},
	}
	for i, spec := range nodePlan {
		ls = append(ls,
			listener{spec.name + " HTTP", p.nodeHTTP[i], "--node-http-port", false},
			listener{spec.name + " HTTPS", p.nodeHTTPS[i], "--node-https-port", false})
	}
	return ls
}

// check fails, naming the port and the flag that moves it, when an address
// cannot be bound. Free-port addresses (port 0) are checked for the host
// only. Node ports and the scheduler's gossip port left at 0 are resolved
// to free ports now: nodes do not report where they listen, and they join
// the scheduler's gossip before it may have started.
func (p *plan) check() error {
	for _, l := range p.listeners() {
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			return fmt.Errorf("%s address %q: %w", l.what, l.addr, err)
		}
		if l.udp {
			pc, err := net.ListenPacket("udp", l.addr)
			if err != nil {
				return bindError(l, host, port, err)
			}
			pc.Close()
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return bindError(l, host, port, err)
		}
		ln.Close()
	}
	// Hold every picked port until all are picked, so none is picked twice.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	pick := func(addr *string) error {
		host, port, err := net.SplitHostPort(*addr)
		if err != nil || port != "0" {
			return err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return fmt.Errorf("pick a free port on %s: %w", host, err)
		}
		held = append(held, ln)
		*addr = ln.Addr().String()
		return nil
	}
	if err := pick(&p.schedGossip); err != nil {
		return err
	}
	for i := range p.nodeHTTP {
		if err := pick(&p.nodeHTTP[i]); err != nil {
			return err
		}
		if err := pick(&p.nodeHTTPS[i]); err != nil {
			return err
		}
	}
	return nil
}

func bindError(l listener, host, port string, err error) error {
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		hint := "pick other addresses with --node-ips"
		if runtime.GOOS == "darwin" {
			hint = fmt.Sprintf("on macOS add the loopback alias first (sudo ifconfig lo0 alias %s up) or pick other addresses with --node-ips", host)
		}
		return fmt.Errorf("%s: cannot bind address %s (%v); %s", l.what, host, err, hint)
	}
	proto := "TCP"
	if l.udp {
		proto = "UDP"
	}
	if port == "0" {
		return fmt.Errorf("%s: cannot listen on %s: %w", l.what, l.addr, err)
	}
	return fmt.Errorf("%s port %s (%s %s) is not available: %v; choose other ports with %s", l.what, port, proto, l.addr, err, l.flag)
}
