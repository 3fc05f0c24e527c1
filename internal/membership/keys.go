package membership

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrNotEncrypted is SetKeys' error on a member started without keys:
// memberlist cannot turn encryption on at run time, so the member must be
// restarted with keys (Config.Keys or Config.KeyFile).
var ErrNotEncrypted = errors.New("membership: gossip was started without keys and memberlist cannot encrypt it at run time; restart with a keyring")

// KeyFingerprint identifies a gossip key without revealing it: the first 8
// bytes of its SHA-256, in hex. Fingerprints are for logs and operators
// comparing keyrings across members; they are not secret.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// KeyFingerprints returns the fingerprint (KeyFingerprint) of each key the
// member gossips with, the primary first, the others in the order SetKeys
// or Start was given them; nil when gossip is not encrypted. It never
// returns the keys themselves.
func (m *Member) KeyFingerprints() []string {
	if m.keyring == nil {
		return nil
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	return fingerprints(m.keyring.GetKeys())
}

// SetKeys changes the running member's gossip keys to exactly keys, the
// first one primary (the one that encrypts; all decrypt): it adds the keys
// not installed yet, makes keys[0] primary, then removes the installed
// keys not listed. Keys rotate without membership flaps in three steps,
// each done on every member before the next starts: [old, new], then
// [new, old], then [new].
//
// Each key must be 16, 24 or 32 bytes, and there must be at least one
// (duplicates count once); otherwise SetKeys changes nothing and returns
// an error. On a member started without keys it changes nothing and
// returns ErrNotEncrypted. It is safe for concurrent use, with gossip and
// with other calls, which it serializes. It logs the fingerprints of the
// new keys, never the keys.
//
// memberlist removes a key by shifting the keys after it in place, in the
// list its receive path may be reading without a lock, so SetKeys only
// ever removes the last key: to drop a key that listed keys follow, it
// takes those off too and adds them back at once, during which packets
// encrypted with them are not understood (as if lost). The three-step
// rotation above never needs that.
func (m *Member) SetKeys(keys [][]byte) error {
	want, err := checkKeys(keys)
	if err != nil {
		return err
	}
	if m.keyring == nil {
		return ErrNotEncrypted
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	kr := m.keyring
	if equalKeys(kr.GetKeys(), want) {
		return nil
	}
	// Validated above, so memberlist's errors (wrong size, unknown
	// primary, removing the primary) cannot happen; they are returned all
	// the same rather than ignored.
	for _, k := range want {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("gossip keyring: %w", err)
		}
	}
	if err := kr.UseKey(want[0]); err != nil {
		return fmt.Errorf("gossip keyring: %w", err)
	}
	have := append([][]byte(nil), kr.GetKeys()...)
	same := 1 // have[0] is want[0] now
	for same < len(have) && same < len(want) && bytes.Equal(have[same], want[same]) {
		same++
	}
	for i := len(have) - 1; i >= same; i-- {
		if err := kr.RemoveKey(have[i]); err != nil {
			return fmt.Errorf("gossip keyring: %w", err)
		}
	}
	for _, k := range want[same:] {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("gossip keyring: %w", err)
		}
	}
	m.log.Info("gossip keys changed", "keys", fingerprints(kr.GetKeys()))
	return nil
}

// checkKeys validates keys for SetKeys, returning them without duplicates.
func checkKeys(keys [][]byte) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("gossip keyring: no keys")
	}
	var out [][]byte
	for i, k := range keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("gossip key %d: a key must be 16, 24 or 32 bytes, not %d", i+1, n)
		}
		dup := false
		for _, o := range out {
			dup = dup || bytes.Equal(o, k)
		}
		if !dup {
			out = append(out, bytes.Clone(k))
		}
	}
	return out, nil
}

func equalKeys(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func fingerprints(keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = KeyFingerprint(k)
	}
	return out
}

// readKeyFile reads and parses a keyring file, also returning the hash of
// its content.
func readKeyFile(path string) ([][]byte, [sha256.Size]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("gossip keyring: %w", err)
	}
	keys, err := ParseKeys(bytes.NewReader(b))
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("%s: %w", path, err)
	}
	return keys, sha256.Sum256(b), nil
}

// watchKeyFile applies cfg.KeyFile with SetKeys whenever its content
// changes (see Config.KeyFile); last is the hash of the content applied at
// Start, if any. A bad content is logged once, a read error once until it
// changes, without key material (ParseKeys' and SetKeys' errors name lines
// and sizes only).
func (m *Member) watchKeyFile(last [sha256.Size]byte) {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.KeyFileInterval)
	defer t.Stop()
	path := m.cfg.KeyFile
	var readErr string
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if err.Error() != readErr {
				readErr = err.Error()
				m.log.Warn("gossip keyring file unreadable; keeping the current keys", "file", path, "err", err)
			}
			continue
		}
		readErr = ""
		sum := sha256.Sum256(b)
		if sum == last {
			continue
		}
		last = sum
		keys, err := ParseKeys(bytes.NewReader(b))
		if err == nil {
			err = m.SetKeys(keys)
		}
		if err != nil {
			m.log.Warn("gossip keyring file not usable; keeping the current keys", "file", path, "err", err)
		}
	}
}
