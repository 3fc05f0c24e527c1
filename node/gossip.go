package node

import (
	"context"
	"net"
	"time"

	"github.com/outpost-cdn/outpost/internal/membership"
)

// gossipMeta is what this node tells the cluster (and so the schedulers):
// where it is, how to reach it, how loaded it is, which config it serves.
// memberlist calls it from its own goroutines.
func (n *Node) gossipMeta() membership.Meta {
	load := float64(n.inFlight.Load()) / float64(n.cfg.MaxInFlight)
	return membership.Meta{
		Role:      membership.RoleNode,
		Region:    n.cfg.Region,
		Latitude:  n.cfg.Latitude,
		Longitude: n.cfg.Longitude,
		HTTP:      n.publicHTTP(),
		HTTPS:     n.publicHTTPS(),
		Capacity:  n.cfg.Capacity,
		Load:      min(load, 1),
		Revision:  n.Revision(),
		Draining:  n.draining.Load(),
	}
}

// applyCluster takes the cluster-wide settings of a new config: whether an
// operator drained this node (gossiped at once, so schedulers need not wait
// for their own config stream), and the controller's gossip keyring.
func (n *Node) applyCluster(d *desired) {
	drain := d.draining[n.cfg.Name]
	changed := n.draining.Swap(drain) != drain
	if changed {
		n.log.Info("drain state changed", "draining", drain)
	}
	if n.gossip == nil {
		return // not started yet: Start applies the persisted config's keys
	}
	n.gossip.AddSeeds(d.gossipSeeds)
	n.gossip.ApplyControllerKeys(d.gossipKeys.GetKeys())
	if changed {
		n.gossip.Update()
	}
}

// gossipLoadLoop re-gossips the metadata every few seconds, so that load
// reaches the schedulers.
func (n *Node) gossipLoadLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.gossip.Update()
		}
	}
}

// Peers returns the cluster as this node's gossip sees it (nil without
// gossip).
func (n *Node) Peers() []membership.Peer {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.Peers()
}

// gossipAdvertise is the gossip address the node tells the controllers,
// for other members to join: the running member's, else the configured
// one when it names a port (an unspecified host takes the host of the
// node's public HTTP address); "" when not known yet.
func (n *Node) gossipAdvertise() string {
	if a := n.GossipAddr(); a != "" {
		return a
	}
	host, port, err := net.SplitHostPort(n.cfg.Gossip.Addr)
	if err != nil || port == "0" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, _, err = net.SplitHostPort(n.publicHTTP()); err != nil {
			return ""
		}
	}
	return net.JoinHostPort(host, port)
}

// GossipAddr is the address this node gossips on ("" without gossip, or
// before gossip started: with the controller's keys it starts with the
// first config).
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.Addr()
}
