package controller

import (
	"context"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// nodeService implements outpostv1.NodeServiceServer.
type nodeService struct {
	outpostv1.UnimplementedNodeServiceServer
	c *Controller
}

var _ outpostv1.NodeServiceServer = (*nodeService)(nil)

// listNodes joins node records, live sessions and operator settings.
func (c *Controller) listNodes(ctx context.Context) ([]*outpostv1.Node, error) {
	recs, _, err := c.store.Range(ctx, store.NodesPrefix(), "", 0)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	return c.nodesOf(ctx, recs)
}

// nodesPage is one page of ListNodes, in name order.
func (c *Controller) nodesPage(ctx context.Context, token string, size int32) (nodes []*outpostv1.Node, next string, err error) {
	after, err := decodePageToken(token, store.NodesPrefix())
	if err != nil {
		return nil, "", err
	}
	n := pageSize(size)
	recs, _, err := c.store.Range(ctx, store.NodesPrefix(), after, n+1)
	if err != nil {
		return nil, "", err
	}
	if int64(len(recs)) > n {
		recs = recs[:n]
		next = encodePageToken(recs[len(recs)-1].Key)
	}
	if len(recs) == 0 {
		return nil, "", nil
	}
	nodes, err = c.nodesOf(ctx, recs)
	return nodes, next, err
}

// nodesOf turns node records into Nodes, with whether each holds a config
// stream (its session) and whether it is drained.
func (c *Controller) nodesOf(ctx context.Context, recs []store.KV) ([]*outpostv1.Node, error) {
	sessions, _, err := c.store.Range(ctx, store.NodeSessionsPrefix(), "", 0)
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, kv := range sessions {
		live[store.LastSegment(kv.Key)] = true
	}
	states, _, err := c.store.Range(ctx, store.NodeStatesPrefix(), "", 0)
	if err != nil {
		return nil, err
	}
	draining := map[string]bool{}
	for _, kv := range states {
		st := &storagev1.NodeState{}
		if err := store.Decode(kv, st); err == nil && st.GetDraining() {
			draining[store.LastSegment(kv.Key)] = true
		}
	}
	out := make([]*outpostv1.Node, 0, len(recs))
	for _, kv := range recs {
		rec := &storagev1.NodeRecord{}
		if err := store.Decode(kv, rec); err != nil {
			c.log.Warn("skipping undecodable node record", "key", kv.Key, "err", err)
			continue
		}
		out = append(out, nodeFromRecord(store.LastSegment(kv.Key), rec, live, draining))
	}
	return out, nil
}

func nodeFromRecord(name string, rec *storagev1.NodeRecord, live, draining map[string]bool) *outpostv1.Node {
	info := rec.GetInfo()
	n := &outpostv1.Node{
		Name:            name,
		Region:          info.GetRegion(),
		Location:        info.GetLocation(),
		HttpAddress:     info.GetHttpAddress(),
		HttpsAddress:    info.GetHttpsAddress(),
		Health:          outpostv1.NodeHealth_NODE_HEALTH_DISCONNECTED,
		AppliedRevision: rec.GetAppliedRevision(),
		LastNack:        rec.GetLastNack(),
		LastSeen:        rec.GetLastSeen(),
		Draining:        draining[name],
		Version:         info.GetVersion(),
	}
	if live[name] {
		n.Health = outpostv1.NodeHealth_NODE_HEALTH_CONNECTED
	}
	return n
}

// redact hides NACK details from account tokens: they may name other
// accounts' domains and certificates. Operators see everything.
func redact(ctx context.Context, nodes []*outpostv1.Node) []*outpostv1.Node {
	if principalFrom(ctx).IsOperator() {
		return nodes
	}
	for _, n := range nodes {
		if nk := n.GetLastNack(); nk != nil {
			n.LastNack = &outpostv1.Nack{Revision: nk.GetRevision(), Time: nk.GetTime(), Error: "(details are visible to operators)"}
		}
	}
	return nodes
}

func (s *nodeService) ListNodes(ctx context.Context, req *outpostv1.ListNodesRequest) (*outpostv1.ListNodesResponse, error) {
	nodes, next, err := s.c.nodesPage(ctx, req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	nodes = redact(ctx, nodes)
	return &outpostv1.ListNodesResponse{Nodes: nodes, CurrentRevision: s.c.cache.Revision(), NextPageToken: next}, nil
}

func (s *nodeService) GetNode(ctx context.Context, req *outpostv1.GetNodeRequest) (*outpostv1.GetNodeResponse, error) {
	nodes, err := s.c.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range redact(ctx, nodes) {
		if n.GetName() == req.GetName() {
			return &outpostv1.GetNodeResponse{Node: n}, nil
		}
	}
	return nil, apierr.NotFound(apierr.ReasonNodeNotFound, "node %q not found", req.GetName())
}

func (s *nodeService) DrainNode(ctx context.Context, req *outpostv1.DrainNodeRequest) (*outpostv1.DrainNodeResponse, error) {
	c := s.c
	// The node record changes with every ACK: check it exists without
	// guarding it, and write only the operator's setting.
	if _, found, err := c.store.GetRaw(ctx, store.NodeKey(req.GetName())); err != nil {
		return nil, err
	} else if !found || req.GetName() == "" {
		return nil, apierr.NotFound(apierr.ReasonNodeNotFound, "node %q not found", req.GetName())
	}
	t := c.store.Begin()
	if _, err := t.Guard(ctx, store.NodeStateKey(req.GetName())); err != nil {
		return nil, err
	}
	t.Put(store.NodeStateKey(req.GetName()), &storagev1.NodeState{Draining: req.GetDraining()})
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	return s.drained(ctx, req.GetName())
}

func (s *nodeService) drained(ctx context.Context, name string) (*outpostv1.DrainNodeResponse, error) {
	resp, err := s.GetNode(ctx, &outpostv1.GetNodeRequest{Name: name})
	if err != nil {
		return nil, err
	}
	return &outpostv1.DrainNodeResponse{Node: resp.GetNode()}, nil
}
