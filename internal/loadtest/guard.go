package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ErrNotLoopback is returned (wrapped) for a connection to an address
// outside loopback when remote targets are not allowed.
var ErrNotLoopback = errors.New("address is not on loopback (127.0.0.0/8, ::1); pass --allow-remote to load-test remote hosts")

// isLoopback reports whether ip is in 127.0.0.0/8 or is ::1 (IPv4-mapped
// loopback included).
func isLoopback(ip netip.Addr) bool { return ip.Unmap().IsLoopback() }

// guardedDialer returns a dialer that refuses, before connecting, any
// resolved address outside loopback unless allowRemote: the one check every
// connection of a run passes through.
func guardedDialer(allowRemote bool, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowRemote {
		d.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%s: %w", address, ErrNotLoopback)
			}
			if !isLoopback(ap.Addr()) {
				return fmt.Errorf("%s: %w", ap.Addr(), ErrNotLoopback)
			}
			return nil
		}
	}
	return d
}

// CheckLoopback resolves the host of addr (host:port or a bare host) and
// fails unless every address it has is on loopback. It lets a command
// refuse remote targets up front, before a run starts.
func CheckLoopback(ctx context.Context, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !isLoopback(ip) {
			return fmt.Errorf("%s: %w", addr, ErrNotLoopback)
		}
		return nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	for _, ip := range ips {
		if !isLoopback(ip) {
			return fmt.Errorf("%s resolves to %s: %w", addr, ip, ErrNotLoopback)
		}
	}
	return nil
}

// checkTargets refuses configured addresses outside loopback.
func (c *Config) checkTargets(ctx context.Context) error {
	if c.AllowRemote {
		return nil
	}
	addrs := append([]string(nil), c.Edges...)
	switch c.Resolve {
	case ResolveDNS:
		addrs = append(addrs, c.DNSServer)
	case ResolveGRPC:
		addrs = append(addrs, c.Scheduler)
	}
	for _, a := range addrs {
		if err := CheckLoopback(ctx, a); err != nil {
			return err
		}
	}
	return nil
}
