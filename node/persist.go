package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/internal/seal"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The last good config lives in DataDir/snapshot as
//
//	magic (8 bytes) | SHA-256 of payload (32 bytes) | payload
//
// where the payload is a storage.v1.NodeSnapshot whose private keys are
// sealed with the node's keyring (DataDir/keyring, mode 0600, unless the
// operator gives one). It is written to a temporary file, synced and renamed
// into place, so a crash leaves the old or the new file, never a torn one.
const (
	snapshotFile = "snapshot"
	keyringFile  = "keyring"
)

var snapshotMagic = []byte("OPSNAP01")

// persister keeps the last good config on disk.
type persister struct {
	dir    string
	sealer *seal.Sealer
	// sealed caches sealed keys by certificate ID and PEM hash, so a
	// persist does not re-encrypt every key.
	sealed map[string]sealedKey
}

type sealedKey struct {
	sum [32]byte
	sec *storagev1.SealedSecret
}

func newPersister(dir, keyringPath string) (*persister, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if keyringPath == "" {
		keyringPath = filepath.Join(dir, keyringFile)
		if _, err := os.Stat(keyringPath); errors.Is(err, os.ErrNotExist) {
			text, err := seal.GenerateKeyring("node-" + randomHex(4))
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(keyringPath, []byte(text), 0o600); err != nil {
				return nil, fmt.Errorf("write node keyring: %w", err)
			}
		}
	}
	kr, err := seal.LoadKeyring(keyringPath)
	if err != nil {
		return nil, err
	}
	return &persister{dir: dir, sealer: seal.NewSealer(kr), sealed: map[string]sealedKey{}}, nil
}

// save writes d as the last good config.
func (p *persister) save(ctx context.Context, d *desired) error {
	snap := &storagev1.NodeSnapshot{Revision: d.revision, PurgeFloor: d.purgeFloor,
		Domains: sortedValues(d.domains), Purges: sortedValues(d.purges), Prefetches: sortedValues(d.prefetches),
		DrainingNodes: sortedKeys(d.draining)}
	if d.gossipKeys != nil {
		plain, err := proto.Marshal(d.gossipKeys)
		if err != nil {
			return err
		}
		if snap.GossipKeyring, err = p.sealer.Seal(ctx, plain, gossipKeyringAAD); err != nil {
			return err
		}
	}
	next := make(map[string]sealedKey, len(d.certs))
	for _, b := range sortedValues(d.certs) {
		sum := sha256.Sum256([]byte(b.GetPrivateKeyPem()))
		sk, ok := p.sealed[b.GetId()]
		if !ok || sk.sum != sum {
			sec, err := p.sealer.Seal(ctx, []byte(b.GetPrivateKeyPem()), []byte(b.GetId()))
			if err != nil {
				return err
			}
			sk = sealedKey{sum: sum, sec: sec}
		}
		next[b.GetId()] = sk
		snap.Certificates = append(snap.Certificates, &storagev1.NodeCertificate{Id: b.GetId(), CertificatePem: b.GetCertificatePem(), PrivateKey: sk.sec})
	}
	p.sealed = next
	payload, err := proto.Marshal(snap)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(payload)
	var buf bytes.Buffer
	buf.Write(snapshotMagic)
	buf.Write(sum[:])
	buf.Write(payload)
	return writeFileAtomic(filepath.Join(p.dir, snapshotFile), buf.Bytes())
}

// load reads the last good config; it returns (nil, nil) when there is none.
func (p *persister) load(ctx context.Context) (*desired, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, snapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) < len(snapshotMagic)+sha256.Size || !bytes.Equal(b[:len(snapshotMagic)], snapshotMagic) {
		return nil, errors.New("snapshot: not an Outpost snapshot file")
	}
	want := b[len(snapshotMagic) : len(snapshotMagic)+sha256.Size]
	payload := b[len(snapshotMagic)+sha256.Size:]
	if sum := sha256.Sum256(payload); !bytes.Equal(sum[:], want) {
		return nil, errors.New("snapshot: checksum mismatch (corrupt file)")
	}
	snap := &storagev1.NodeSnapshot{}
	if err := proto.Unmarshal(payload, snap); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	d := &desired{revision: snap.GetRevision(), purgeFloor: snap.GetPurgeFloor(), domains: map[string]*outpostv1.Domain{}, certs: map[string]*outpostv1.CertificateBundle{},
		purges: map[string]*outpostv1.Purge{}, prefetches: map[string]*outpostv1.Prefetch{}, draining: map[string]bool{}}
	for _, n := range snap.GetDrainingNodes() {
		d.draining[n] = true
	}
	if snap.GetGossipKeyring() != nil {
		plain, err := p.sealer.Open(ctx, snap.GetGossipKeyring(), gossipKeyringAAD)
		if err != nil {
			return nil, fmt.Errorf("snapshot: gossip keyring: %w", err)
		}
		d.gossipKeys = &outpostv1.GossipKeyring{}
		if err := proto.Unmarshal(plain, d.gossipKeys); err != nil {
			return nil, fmt.Errorf("snapshot: gossip keyring: %w", err)
		}
	}
	for _, dom := range snap.GetDomains() {
		d.domains[dom.GetName()] = dom
	}
	for _, p := range snap.GetPurges() {
		d.purges[p.GetTaskId()] = p
	}
	for _, p := range snap.GetPrefetches() {
		d.prefetches[p.GetTaskId()] = p
	}
	for _, c := range snap.GetCertificates() {
		key, err := p.sealer.Open(ctx, c.GetPrivateKey(), []byte(c.GetId()))
		if err != nil {
			return nil, fmt.Errorf("snapshot: certificate %s: %w", c.GetId(), err)
		}
		d.certs[c.GetId()] = &outpostv1.CertificateBundle{Id: c.GetId(), CertificatePem: c.GetCertificatePem(), PrivateKeyPem: string(key)}
		p.sealed[c.GetId()] = sealedKey{sum: sha256.Sum256(key), sec: c.GetPrivateKey()}
	}
	return d, nil
}

// gossipKeyringAAD binds a sealed gossip keyring to its purpose.
var gossipKeyringAAD = []byte("gossip-keyring")

// writeFileAtomic writes data to path with mode 0600 via a synced
// temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func sortedValues[V any](m map[string]V) []V {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]V, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// saver persists configs in the background, so that applying a config (and
// the ACK after it) never waits for the disk: with many certificates a
// snapshot is large, and purges change the config often. Configs that
// arrive while a save runs are coalesced: only the newest is written.
// close writes the last one before it returns.
type saver struct {
	p   *persister
	log *slog.Logger

	mu      sync.Mutex
	next    *desired // waiting to be written, or nil
	closed  bool
	wake    chan struct{}
	stopped chan struct{}
	// saved, for tests, is called after each save with its revision.
	saved func(rev int64)
}

func newSaver(p *persister, log *slog.Logger) *saver {
	s := &saver{p: p, log: log, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go s.run()
	return s
}

// submit queues d to be written, replacing a config still waiting.
func (s *saver) submit(d *desired) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.next = d
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *saver) run() {
	defer close(s.stopped)
	for range s.wake {
		s.mu.Lock()
		d, closed := s.next, s.closed
		s.next = nil
		s.mu.Unlock()
		if d != nil {
			if err := s.p.save(context.Background(), d); err != nil {
				s.log.Error("cannot persist the config", "revision", d.revision, "err", err)
			} else if s.saved != nil {
				s.saved(d.revision)
			}
		}
		if closed {
			return
		}
	}
}

// close writes the config still waiting, if any, and stops.
func (s *saver) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.stopped
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.wake)
	<-s.stopped
}
