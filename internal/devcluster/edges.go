package devcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/outpost-cdn/outpost/internal/membership"
	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler"
)

// joinFunc returns a one-time join token for a member name and role.
type joinFunc func(name string, role outpostv1.MemberRole) (string, error)

// schedulerName is the dev scheduler's member name.
const schedulerName = "scheduler-1"

// startScheduler starts the scheduler against the controller, its
// certificate kept under dir/scheduler.
func startScheduler(ctx context.Context, dir string, p *plan, controllerAddr string, join joinFunc, cnameSuffix, coverageZone string, log *slog.Logger) (*scheduler.Scheduler, error) {
	token, err := join(schedulerName, outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER)
	if err != nil {
		return nil, err
	}
	s, err := scheduler.Start(ctx, scheduler.Config{
		Name:             schedulerName,
		CoverageZoneFile: coverageZone,
		GRPCAddr:         p.schedGRPC,
		DNSAddr:          p.schedDNS,
		Controllers:      []string{controllerAddr},
		JoinToken:        token,
		DataDir:          filepath.Join(dir, "scheduler"),
		CNAMESuffix:      cnameSuffix,
		// The edge nodes join the scheduler's gossip. Its keys come from
		// the controller (set up by runSetup).
		Gossip: membership.Options{Addr: p.schedGossip},
		Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("start the scheduler: %w", err)
	}
	return s, nil
}

// startNodes starts the edge nodes of nodePlan, each with its data under
// dir/nodes/NAME. On failure the nodes already started are closed.
func startNodes(ctx context.Context, dir string, p *plan, controllerAddr string, join joinFunc, gossipJoin string, log *slog.Logger) ([]*node.Node, []NodeEndpoint, error) {
	var nodes []*node.Node
	var eps []NodeEndpoint
	for i, spec := range nodePlan {
		token, err := join(spec.name, outpostv1.MemberRole_MEMBER_ROLE_NODE)
		if err != nil {
			closeNodes(nodes)
			return nil, nil, err
		}
		n, err := node.Start(ctx, node.Config{
			Name:        spec.name,
			Region:      spec.region,
			Latitude:    spec.lat,
			Longitude:   spec.lon,
			Controllers: []string{controllerAddr},
			JoinToken:   token,
			HTTPAddr:    p.nodeHTTP[i],
			HTTPSAddr:   p.nodeHTTPS[i],
			DataDir:     filepath.Join(dir, "nodes", spec.name),
			Gossip:      membership.Options{Addr: net.JoinHostPort(hostOf(p.nodeHTTP[i]), "0"), Join: []string{gossipJoin}},
			Logger:      log,
		})
		if err != nil {
			closeNodes(nodes)
			return nil, nil, fmt.Errorf("start edge node %s: %w", spec.name, err)
		}
		nodes = append(nodes, n)
		eps = append(eps, NodeEndpoint{Name: spec.name, Region: spec.region, HTTP: p.nodeHTTP[i], HTTPS: p.nodeHTTPS[i]})
	}
	return nodes, eps, nil
}

// waitConfigured waits, up to limit, until every node has joined the
// cluster and applied a first configuration (and so joins gossip), so that
// the cluster is whole when Start returns. A node still waiting is logged,
// not an error: it keeps trying in the background.
func waitConfigured(ctx context.Context, nodes []*node.Node, limit time.Duration, log *slog.Logger) {
	deadline := time.Now().Add(limit)
	for i, n := range nodes {
		for n.Revision() == 0 {
			if ctx.Err() != nil || time.Now().After(deadline) {
				log.Warn("an edge node has no configuration yet; it keeps trying", "node", nodePlan[i].name)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// closeNodes closes the nodes in parallel: each may wait a few seconds for
// requests in flight.
func closeNodes(nodes []*node.Node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(n.Close)
	}
	wg.Wait()
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// coverageZoneFile is the scheduler's coverage zone under the cluster's
// directory, rewritten at every start.
const coverageZoneFile = "coverage-zone.json"

// writeCoverageZone writes the scheduler's coverage zone: each dev region
// with its location and its demo client subnet.
func writeCoverageZone(path string) error {
	type region struct {
		Latitude  float64  `json:"latitude"`
		Longitude float64  `json:"longitude"`
		Networks  []string `json:"networks"`
	}
	czf := struct {
		Regions map[string]region `json:"regions"`
	}{Regions: map[string]region{}}
	for _, r := range demoRegions {
		czf.Regions[r.name] = region{Latitude: r.lat, Longitude: r.lon, Networks: []string{r.clientSubnet}}
	}
	b, err := json.MarshalIndent(czf, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'), 0o644)
}
