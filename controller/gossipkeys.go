package controller

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/membership"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// maxGossipKeys bounds the keyring: a rotation needs two keys at a time,
// and every key is tried on every gossip message.
const maxGossipKeys = 8

// gossipKeyringAAD binds the sealed keyring to its purpose.
var gossipKeyringAAD = []byte("gossip-keyring")

// validGossipKeys checks a keyring as memberlist will need it.
func validGossipKeys(keys [][]byte) error {
	if len(keys) == 0 || len(keys) > maxGossipKeys {
		return apierr.InvalidArgument(apierr.ReasonInvalidGossipKey, "a gossip keyring has 1 to %d keys, not %d", maxGossipKeys, len(keys))
	}
	seen := map[string]bool{}
	for i, k := range keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return apierr.InvalidArgument(apierr.ReasonInvalidGossipKey, "gossip key %d is %d bytes; AES keys are 16, 24 or 32 bytes", i+1, n)
		}
		if seen[string(k)] {
			return apierr.InvalidArgument(apierr.ReasonInvalidGossipKey, "gossip key %d repeats an earlier key", i+1)
		}
		seen[string(k)] = true
	}
	return nil
}

func (s *nodeService) SetGossipKeyring(ctx context.Context, req *outpostv1.SetGossipKeyringRequest) (*outpostv1.SetGossipKeyringResponse, error) {
	c := s.c
	keys := req.GetKeys()
	if err := validGossipKeys(keys); err != nil {
		return nil, err
	}
	plain, err := proto.Marshal(&outpostv1.GossipKeyring{Keys: keys})
	if err != nil {
		return nil, err
	}
	sealed, err := c.sealer.Seal(ctx, plain, gossipKeyringAAD)
	if err != nil {
		return nil, err
	}
	rec := &storagev1.StoredGossipKeyring{Keys: sealed}
	for _, k := range keys {
		rec.Fingerprints = append(rec.Fingerprints, membership.KeyFingerprint(k))
	}
	t := c.store.Begin()
	if _, err := t.Guard(ctx, store.GossipKeyringKey()); err != nil {
		return nil, err
	}
	t.Put(store.GossipKeyringKey(), rec)
	rev, err := t.Commit(ctx)
	if err != nil {
		return nil, err
	}
	// Only fingerprints are logged, never keys.
	c.log.Info("gossip keyring set", "fingerprints", rec.GetFingerprints(), "revision", rev)
	return &outpostv1.SetGossipKeyringResponse{Fingerprints: rec.GetFingerprints(), Revision: rev}, nil
}

func (s *nodeService) GetGossipKeyring(ctx context.Context, _ *outpostv1.GetGossipKeyringRequest) (*outpostv1.GetGossipKeyringResponse, error) {
	rec := &storagev1.StoredGossipKeyring{}
	rev, found, err := s.c.store.Get(ctx, store.GossipKeyringKey(), rec)
	if err != nil || !found {
		return &outpostv1.GetGossipKeyringResponse{}, err
	}
	return &outpostv1.GetGossipKeyringResponse{Fingerprints: rec.GetFingerprints(), Revision: rev}, nil
}

// openGossipKeyring unseals a stored keyring for the config stream.
func (c *configCache) openGossipKeyring(ctx context.Context, kv store.KV) (*outpostv1.GossipKeyring, error) {
	rec := &storagev1.StoredGossipKeyring{}
	if err := store.Decode(kv, rec); err != nil {
		return nil, err
	}
	plain, err := c.sealer.Open(ctx, rec.GetKeys(), gossipKeyringAAD)
	if err != nil {
		return nil, err
	}
	kr := &outpostv1.GossipKeyring{}
	if err := proto.Unmarshal(plain, kr); err != nil {
		return nil, err
	}
	return kr, nil
}
