package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// KEKSize is the size in bytes of a Keyring key-encryption key (AES-256).
const KEKSize = 32

// maxKeyIDLength bounds a key ID.
const maxKeyIDLength = 64

// maxKeyringSize bounds the keyring file LoadKeyring reads.
const maxKeyringSize = 1 << 20

// ErrUnknownKey is returned, wrapped, by Unwrap and Open when a secret was
// wrapped by a key-encryption key the wrapper no longer holds.
var ErrUnknownKey = errors.New("unknown key-encryption key")

// KeyWrapper wraps and unwraps data-encryption keys with a key-encryption
// key (KEK). It is the seam where an external KMS plugs in. Implementations
// must be safe for concurrent use. Wrap uses the current primary KEK and
// reports its ID; Unwrap must accept any KEK ID it still holds, so that
// secrets sealed before a rotation stay readable until they are re-wrapped.
// Unwrap of an ID it does not hold returns an error wrapping ErrUnknownKey;
// of wrapped bytes that were altered, an error. Neither error may include
// key bytes.
type KeyWrapper interface {
	PrimaryKeyID() string
	Wrap(ctx context.Context, dataKey []byte) (keyID string, wrapped []byte, err error)
	Unwrap(ctx context.Context, keyID string, wrapped []byte) ([]byte, error)
}

// Keyring is a local KeyWrapper whose KEKs are AES-256-GCM keys held in
// memory. A wrapped key is nonce||AES-GCM(kek, dataKey) with the KEK ID as
// associated data. A Keyring is immutable and safe for concurrent use.
type Keyring struct {
	primary string
	keks    map[string]cipher.AEAD
	ids     []string // in file order, primary first
}

var (
	_ KeyWrapper = (*Keyring)(nil)
	_ KeyLister  = (*Keyring)(nil)
)

// ParseKeyring reads keyring text: one KEK per line, "ID:BASE64-32-BYTES"
// (standard base64), blank lines and lines starting with '#' ignored. The
// first key is the primary. IDs are 1 to 64 of [A-Za-z0-9._-] and unique.
// Errors name the line but never echo its bytes.
func ParseKeyring(text string) (*Keyring, error) {
	kr := &Keyring{keks: make(map[string]cipher.AEAD)}
	n := 0
	for line := range strings.Lines(text) {
		n++
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, b64, ok := strings.Cut(line, ":")
		id, b64 = strings.TrimSpace(id), strings.TrimSpace(b64)
		if !ok {
			return nil, fmt.Errorf("keyring line %d: expected ID:BASE64-KEY", n)
		}
		if !ValidKeyID(id) {
			return nil, fmt.Errorf("keyring line %d: invalid key ID: use 1 to %d letters, digits, '.', '_' or '-'", n, maxKeyIDLength)
		}
		if _, dup := kr.keks[id]; dup {
			return nil, fmt.Errorf("keyring line %d: duplicate key ID %q", n, id)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("keyring line %d: key %q is not valid base64", n, id)
		}
		if len(key) != KEKSize {
			return nil, fmt.Errorf("keyring line %d: key %q is %d bytes, want %d (AES-256)", n, id, len(key), KEKSize)
		}
		aead, err := newGCM(key)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("keyring line %d: key %q: %w", n, id, err)
		}
		kr.keks[id] = aead
		kr.ids = append(kr.ids, id)
	}
	if len(kr.ids) == 0 {
		return nil, errors.New("keyring holds no key")
	}
	kr.primary = kr.ids[0]
	return kr, nil
}

// LoadKeyring reads and parses a keyring file. It refuses a file that
// group or others may access (mode&0o077 != 0), since the keyring protects
// every sealed secret.
func LoadKeyring(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keyring %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("keyring %s is accessible by group or others (mode %#o); restrict it with \"chmod 600 %s\"", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyringSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if len(b) > maxKeyringSize {
		return nil, fmt.Errorf("keyring %s is larger than %d bytes", path, maxKeyringSize)
	}
	kr, err := ParseKeyring(string(b))
	clear(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kr, nil
}

// GenerateKeyring returns the text of a new keyring holding one random key
// with the given ID.
func GenerateKeyring(id string) (string, error) {
	if !ValidKeyID(id) {
		return "", fmt.Errorf("invalid key ID %q: use 1 to %d letters, digits, '.', '_' or '-'", id, maxKeyIDLength)
	}
	key := make([]byte, KEKSize)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	defer clear(key)
	return "# Outpost seal keyring: one \"ID:BASE64-KEY\" per line, the first is the primary.\n" +
		"# To rotate, add a new key on top, re-wrap the secrets, then drop the old key.\n" +
		id + ":" + base64.StdEncoding.EncodeToString(key) + "\n", nil
}

// ValidKeyID reports whether id is a valid KEK ID: 1 to 64 of
// [A-Za-z0-9._-].
func ValidKeyID(id string) bool {
	if id == "" || len(id) > maxKeyIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// PrimaryKeyID returns the ID of the key Wrap uses.
func (kr *Keyring) PrimaryKeyID() string { return kr.primary }

// KeyIDs returns the IDs of the keys the keyring holds, primary first.
func (kr *Keyring) KeyIDs() []string { return append([]string(nil), kr.ids...) }

// Wrap encrypts dataKey with the primary key.
func (kr *Keyring) Wrap(ctx context.Context, dataKey []byte) (string, []byte, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	wrapped, err := sealGCM(kr.keks[kr.primary], dataKey, wrapAAD(kr.primary))
	if err != nil {
		return "", nil, err
	}
	return kr.primary, wrapped, nil
}

// Unwrap decrypts a data key wrapped by the key keyID.
func (kr *Keyring) Unwrap(ctx context.Context, keyID string, wrapped []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	aead, ok := kr.keks[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, keyID)
	}
	dataKey, err := openGCM(aead, wrapped, wrapAAD(keyID))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key with %q: %w", keyID, err)
	}
	return dataKey, nil
}

// wrapAAD binds a wrapped key to the ID of the KEK that wrapped it.
func wrapAAD(keyID string) []byte { return []byte("outpost-seal-kek:" + keyID) }

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealGCM returns nonce||ciphertext.
func sealGCM(aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return aead.Seal(out, out, plaintext, aad), nil
}

// errDecrypt hides why AES-GCM refused: a wrong key, wrong associated data
// and tampering all look the same, as they should.
var errDecrypt = errors.New("message authentication failed (wrong key or associated data, or tampered data)")

// openGCM opens nonce||ciphertext.
func openGCM(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed data too short")
	}
	nonce, ct := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, errDecrypt
	}
	return pt, nil
}
