package controller

import (
	"context"
	"math/rand/v2"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/outpost-cdn/outpost/controller/store"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// maxGossipSeeds bounds the join addresses a snapshot carries: memberlist
// needs one live member to join, the rest is for when some are gone.
const maxGossipSeeds = 16

// gossipSeeds returns up to maxGossipSeeds gossip addresses of edge nodes
// that hold a config stream now, other than the one called self, in random
// order. Errors are logged and give no seeds: seeds are a convenience,
// never a reason to hold back a config.
func (c *Controller) gossipSeeds(ctx context.Context, self string) []string {
	sessions, _, err := c.store.Range(ctx, store.NodeSessionsPrefix(), "", 0)
	if err != nil {
		c.log.Debug("gossip seeds: list sessions", "err", err)
		return nil
	}
	live := make(map[string]bool, len(sessions))
	for _, kv := range sessions {
		live[strings.TrimPrefix(kv.Key, store.NodeSessionsPrefix())] = true
	}
	delete(live, self)
	if len(live) == 0 {
		return nil
	}
	records, _, err := c.store.Range(ctx, store.NodesPrefix(), "", 0)
	if err != nil {
		c.log.Debug("gossip seeds: list nodes", "err", err)
		return nil
	}
	var seeds []string
	for _, kv := range records {
		if !live[strings.TrimPrefix(kv.Key, store.NodesPrefix())] {
			continue
		}
		rec := &storagev1.NodeRecord{}
		if err := store.Decode(kv, rec); err != nil {
			continue
		}
		if a := rec.GetInfo().GetGossipAddress(); a != "" {
			seeds = append(seeds, a)
		}
	}
	rand.Shuffle(len(seeds), func(i, j int) { seeds[i], seeds[j] = seeds[j], seeds[i] })
	return seeds[:min(len(seeds), maxGossipSeeds)]
}

// withSeeds returns snap with seeds, without changing snap: the cache's
// snapshots are shared. The copy is shallow (the lists are shared too).
func withSeeds(snap *outpostv1.StreamConfigResponse, seeds []string) *outpostv1.StreamConfigResponse {
	if len(seeds) == 0 {
		return snap
	}
	out := &outpostv1.StreamConfigResponse{}
	dst := out.ProtoReflect()
	snap.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	out.GossipSeeds = seeds
	return out
}
