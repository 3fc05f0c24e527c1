// Package seal encrypts secrets at rest, such as certificate private keys in
// etcd and on edge-node disks, under envelope encryption: each secret has its
// own random data key, and the data key is wrapped by a key-encryption key
// that a KeyWrapper (a local Keyring, or an external KMS) holds.
package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
)

// DataKeySize is the size in bytes of a data key (AES-256).
const DataKeySize = 32

// Sealer seals secrets under envelope encryption: a fresh random 32-byte
// data key per secret, AES-256-GCM over the plaintext with the caller's
// associated data, and the data key wrapped by the KeyWrapper. The
// associated data binds a secret to its record (for example a certificate
// ID), so a sealed secret copied into another record does not open. The
// ciphertext is nonce||sealed. A Sealer is safe for concurrent use if its
// KeyWrapper is.
type Sealer struct {
	w KeyWrapper
}

// NewSealer returns a Sealer that wraps data keys with w.
func NewSealer(w KeyWrapper) *Sealer { return &Sealer{w: w} }

// Seal encrypts plaintext bound to aad.
func (s *Sealer) Seal(ctx context.Context, plaintext, aad []byte) (*storagev1.SealedSecret, error) {
	dataKey := make([]byte, DataKeySize)
	defer clear(dataKey)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, fmt.Errorf("seal: data key: %w", err)
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	ct, err := sealGCM(aead, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	keyID, wrapped, err := s.w.Wrap(ctx, dataKey)
	if err != nil {
		return nil, fmt.Errorf("seal: wrap data key: %w", err)
	}
	return &storagev1.SealedSecret{KekId: keyID, WrappedDataKey: wrapped, Ciphertext: ct}, nil
}

// Open decrypts a sealed secret bound to aad. It fails, without detail on
// the cause, when aad differs from the one it was sealed with or the secret
// was altered; and with an error wrapping ErrUnknownKey when the wrapper
// no longer holds its key-encryption key.
func (s *Sealer) Open(ctx context.Context, sec *storagev1.SealedSecret, aad []byte) ([]byte, error) {
	dataKey, err := s.unwrap(ctx, sec)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, fmt.Errorf("open sealed secret: %w", err)
	}
	pt, err := openGCM(aead, sec.GetCiphertext(), aad)
	if err != nil {
		return nil, fmt.Errorf("open sealed secret: %w", err)
	}
	return pt, nil
}

// PrimaryKeyID returns the ID of the key-encryption key that Seal and
// Rewrap wrap data keys with.
func (s *Sealer) PrimaryKeyID() string { return s.w.PrimaryKeyID() }

// KeyLister is implemented by a KeyWrapper that can list the IDs of the
// key-encryption keys it holds, primary first, as Keyring does.
type KeyLister interface {
	KeyIDs() []string
}

// KeyIDs returns the IDs of the key-encryption keys the wrapper holds,
// primary first: every key of a KeyLister, else the primary alone.
func (s *Sealer) KeyIDs() []string {
	if l, ok := s.w.(KeyLister); ok {
		return l.KeyIDs()
	}
	return []string{s.w.PrimaryKeyID()}
}

// NeedsRewrap reports whether sec's data key is wrapped by a key other than
// the wrapper's primary, so that Rewrap should be applied before that key is
// retired.
func (s *Sealer) NeedsRewrap(sec *storagev1.SealedSecret) bool {
	return sec.GetKekId() != s.w.PrimaryKeyID()
}

// Rewrap returns sec with its data key unwrapped by its key-encryption key
// and wrapped again by the primary one. The ciphertext is unchanged, so the
// secret opens with the same associated data.
func (s *Sealer) Rewrap(ctx context.Context, sec *storagev1.SealedSecret) (*storagev1.SealedSecret, error) {
	dataKey, err := s.unwrap(ctx, sec)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	keyID, wrapped, err := s.w.Wrap(ctx, dataKey)
	if err != nil {
		return nil, fmt.Errorf("rewrap: wrap data key: %w", err)
	}
	return &storagev1.SealedSecret{KekId: keyID, WrappedDataKey: wrapped, Ciphertext: bytes.Clone(sec.GetCiphertext())}, nil
}

func (s *Sealer) unwrap(ctx context.Context, sec *storagev1.SealedSecret) ([]byte, error) {
	if sec == nil {
		return nil, errors.New("open sealed secret: no secret")
	}
	dataKey, err := s.w.Unwrap(ctx, sec.GetKekId(), sec.GetWrappedDataKey())
	if err != nil {
		return nil, fmt.Errorf("open sealed secret: %w", err)
	}
	if len(dataKey) != DataKeySize {
		clear(dataKey)
		return nil, fmt.Errorf("open sealed secret: data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	return dataKey, nil
}
