package devcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"github.com/outpost-cdn/outpost/internal/membership"
	"github.com/outpost-cdn/outpost/node"
	"github.com/outpost-cdn/outpost/scheduler"
)

// startScheduler starts the scheduler against the controller.
func startScheduler(ctx context.Context, p *plan, controllerAddr, token, cnameSuffix, coverageZone string, log *slog.Logger) (*scheduler.Scheduler, error) {
	s, err := scheduler.Start(ctx, scheduler.Config{
		CoverageZoneFile: coverageZone,
		GRPCAddr:         p.schedGRPC,
		DNSAddr:          p.schedDNS,
		Controllers:      []string{controllerAddr},
		Token:            token,
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
func startNodes(ctx context.Context, dir string, p *plan, controllerAddr, token, gossipJoin string, log *slog.Logger) ([]*node.Node, []NodeEndpoint, error) {
	var nodes []*node.Node
	var eps []NodeEndpoint
	for i, spec := range nodePlan {
		n, err := node.Start(ctx, node.Config{
			Name:        spec.name,
			Region:      spec.region,
			Latitude:    spec.lat,
			Longitude:   spec.lon,
			Controllers: []string{controllerAddr},
			Token:       token,
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
