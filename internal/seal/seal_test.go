package seal_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-cdn/outpost/internal/seal"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
)

// Fixed test keys, so that tests can check errors never echo them.
var (
	keyA = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa1}, 32))
	keyB = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xb2}, 32))
)

func keyring(t testing.TB, text string) *seal.Keyring {
	t.Helper()
	kr, err := seal.ParseKeyring(text)
	if err != nil {
		t.Fatalf("ParseKeyring: %v", err)
	}
	return kr
}

// mutate returns a deep copy of s changed by f.
func mutate(s *storagev1.SealedSecret, f func(*storagev1.SealedSecret)) *storagev1.SealedSecret {
	c := &storagev1.SealedSecret{
		KekId:          s.GetKekId(),
		WrappedDataKey: bytes.Clone(s.GetWrappedDataKey()),
		Ciphertext:     bytes.Clone(s.GetCiphertext()),
	}
	f(c)
	return c
}

func TestSealOpen(t *testing.T) {
	ctx := context.Background()
	s := seal.NewSealer(keyring(t, "a:"+keyA))
	plaintext := []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n")
	aad := []byte("certificate/c-123")

	sec, err := s.Seal(ctx, plaintext, aad)
	if err != nil {
		t.Fatal(err)
	}
	if sec.GetKekId() != "a" || len(sec.GetWrappedDataKey()) == 0 {
		t.Fatalf("sealed secret %v", sec)
	}
	for _, field := range [][]byte{sec.GetCiphertext(), sec.GetWrappedDataKey()} {
		if bytes.Contains(field, plaintext[:20]) || bytes.Contains(field, []byte("MIGHAgEAMBMGByqGSM49")) {
			t.Fatal("sealed output contains the plaintext")
		}
	}
	got, err := s.Open(ctx, sec, aad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plaintext) {
		t.Fatalf("Open = %q", got)
	}

	// Each seal is fresh: another data key and nonce.
	again, err := s.Seal(ctx, plaintext, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again.GetCiphertext(), sec.GetCiphertext()) || bytes.Equal(again.GetWrappedDataKey(), sec.GetWrappedDataKey()) {
		t.Fatal("two seals of the same plaintext are identical")
	}

	// Empty plaintext and nil aad round-trip too.
	empty, err := s.Seal(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Open(ctx, empty, nil); err != nil || len(got) != 0 {
		t.Fatalf("empty round trip: %q, %v", got, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	s := seal.NewSealer(keyring(t, "a:"+keyA))
	aad := []byte("certificate/c-1")
	sec, err := s.Seal(ctx, []byte("secret key material"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i%len(b)] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name    string
		sec     *storagev1.SealedSecret
		aad     []byte
		unknown bool
	}{
		{name: "wrong aad", sec: sec, aad: []byte("certificate/c-2")},
		{name: "no aad", sec: sec, aad: nil},
		{name: "tampered ciphertext", sec: mutate(sec, func(c *storagev1.SealedSecret) { c.Ciphertext = flip(c.Ciphertext, 20) }), aad: aad},
		{name: "tampered nonce", sec: mutate(sec, func(c *storagev1.SealedSecret) { c.Ciphertext = flip(c.Ciphertext, 0) }), aad: aad},
		{name: "truncated ciphertext", sec: mutate(sec, func(c *storagev1.SealedSecret) { c.Ciphertext = c.Ciphertext[:10] }), aad: aad},
		{name: "extended ciphertext", sec: mutate(sec, func(c *storagev1.SealedSecret) { c.Ciphertext = append(c.Ciphertext, 0) }), aad: aad},
		{name: "tampered wrapped key", sec: mutate(sec, func(c *storagev1.SealedSecret) { c.WrappedDataKey = flip(c.WrappedDataKey, 15) }), aad: aad},
		{name: "empty wrapped key", sec: mutate(sec, func(c *storagev1.SealedSecret) { c.WrappedDataKey = nil }), aad: aad},
		{name: "unknown kek", sec: mutate(sec, func(c *storagev1.SealedSecret) { c.KekId = "gone" }), aad: aad, unknown: true},
		{name: "nil secret", sec: nil, aad: aad},
		{name: "empty secret", sec: &storagev1.SealedSecret{}, aad: aad, unknown: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Open(ctx, tc.sec, tc.aad)
			if err == nil {
				t.Fatalf("Open succeeded: %q", got)
			}
			if got != nil {
				t.Fatal("plaintext returned with an error")
			}
			if errors.Is(err, seal.ErrUnknownKey) != tc.unknown {
				t.Fatalf("errors.Is(%v, ErrUnknownKey) = %v, want %v", err, !tc.unknown, tc.unknown)
			}
			if strings.Contains(err.Error(), keyA) || strings.Contains(err.Error(), "secret key material") {
				t.Fatalf("error leaks material: %v", err)
			}
		})
	}

	// A keyring with the same ID but another key does not open it.
	other := seal.NewSealer(keyring(t, "a:"+keyB))
	if _, err := other.Open(ctx, sec, aad); err == nil {
		t.Fatal("opened with another key of the same ID")
	}
}

func TestRotation(t *testing.T) {
	ctx := context.Background()
	old := seal.NewSealer(keyring(t, "old:"+keyA))
	aad := []byte("certificate/c-9")
	sec, err := old.Seal(ctx, []byte("the key"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if sec.GetKekId() != "old" || old.NeedsRewrap(sec) {
		t.Fatalf("sealed under %q, NeedsRewrap %v", sec.GetKekId(), old.NeedsRewrap(sec))
	}

	// After rotation both keys are held; "new" is the primary.
	rotated := seal.NewSealer(keyring(t, "# rotated\nnew:"+keyB+"\nold:"+keyA+"\n"))
	if got, err := rotated.Open(ctx, sec, aad); err != nil || string(got) != "the key" {
		t.Fatalf("Open after rotation: %q, %v", got, err)
	}
	if !rotated.NeedsRewrap(sec) {
		t.Fatal("NeedsRewrap = false for a secret under the old key")
	}
	re, err := rotated.Rewrap(ctx, sec)
	if err != nil {
		t.Fatal(err)
	}
	if re.GetKekId() != "new" || rotated.NeedsRewrap(re) {
		t.Fatalf("rewrapped under %q", re.GetKekId())
	}
	if !bytes.Equal(re.GetCiphertext(), sec.GetCiphertext()) {
		t.Fatal("Rewrap changed the ciphertext")
	}

	// Once the old key is dropped, only the rewrapped secret opens.
	newOnly := seal.NewSealer(keyring(t, "new:"+keyB))
	if got, err := newOnly.Open(ctx, re, aad); err != nil || string(got) != "the key" {
		t.Fatalf("Open rewrapped: %q, %v", got, err)
	}
	if _, err := newOnly.Open(ctx, sec, aad); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("Open of a secret under a dropped key: %v, want ErrUnknownKey", err)
	}
	if _, err := newOnly.Rewrap(ctx, sec); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("Rewrap under a dropped key: %v, want ErrUnknownKey", err)
	}
	if _, err := newOnly.Open(ctx, re, []byte("certificate/other")); err == nil {
		t.Fatal("rewrapped secret opened with another aad")
	}
}

func TestParseKeyring(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xc3}, 16))
	for _, tc := range []struct {
		name    string
		text    string
		primary string
		ids     []string
		wantErr string
	}{
		{name: "one key", text: "a:" + keyA, primary: "a", ids: []string{"a"}},
		{name: "first is primary", text: "b:" + keyB + "\na:" + keyA + "\n", primary: "b", ids: []string{"b", "a"}},
		{name: "comments blanks and spaces", text: "# keyring\n\n  # indented comment\r\n k-1.x_Y : " + keyA + " \r\n\n", primary: "k-1.x_Y", ids: []string{"k-1.x_Y"}},
		{name: "empty", text: "", wantErr: "no key"},
		{name: "only comments", text: "# nothing\n\n", wantErr: "no key"},
		{name: "no colon", text: keyA, wantErr: "line 1"},
		{name: "bad base64", text: "a:" + keyA[:10] + "!" + keyA[11:], wantErr: "not valid base64"},
		{name: "unpadded base64", text: "a:" + strings.TrimRight(keyA, "="), wantErr: "not valid base64"},
		{name: "short key", text: "a:" + short, wantErr: "16 bytes"},
		{name: "long key", text: "a:" + keyA[:len(keyA)-1] + "A" + keyB, wantErr: "65 bytes"},
		{name: "empty key", text: "a:", wantErr: "0 bytes"},
		{name: "duplicate id", text: "a:" + keyA + "\n# x\na:" + keyB, wantErr: "line 3: duplicate key ID \"a\""},
		{name: "empty id", text: ":" + keyA, wantErr: "invalid key ID"},
		{name: "id with space", text: "my key:" + keyA, wantErr: "invalid key ID"},
		{name: "id too long", text: strings.Repeat("k", 65) + ":" + keyA, wantErr: "invalid key ID"},
		{name: "id of 64", text: strings.Repeat("k", 64) + ":" + keyA, primary: strings.Repeat("k", 64), ids: []string{strings.Repeat("k", 64)}},
		{name: "error on a later line", text: "a:" + keyA + "\nb:" + short, wantErr: "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := seal.ParseKeyring(tc.text)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseKeyring succeeded, want error containing %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
				for _, k := range []string{keyA, keyB, short, keyA[:16], keyB[:16], short[:16]} {
					if strings.Contains(err.Error(), k) {
						t.Fatalf("error %q echoes key bytes", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if kr.PrimaryKeyID() != tc.primary || strings.Join(kr.KeyIDs(), ",") != strings.Join(tc.ids, ",") {
				t.Fatalf("primary %q ids %q, want %q %q", kr.PrimaryKeyID(), kr.KeyIDs(), tc.primary, tc.ids)
			}
		})
	}
}

func TestLoadKeyring(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask may have narrowed it
			t.Fatal(err)
		}
		return p
	}
	good := write("good", 0o600, "a:"+keyA+"\n")
	kr, err := seal.LoadKeyring(good)
	if err != nil {
		t.Fatal(err)
	}
	if kr.PrimaryKeyID() != "a" {
		t.Fatalf("primary %q", kr.PrimaryKeyID())
	}
	if _, err := seal.LoadKeyring(write("ro", 0o400, "a:"+keyA)); err != nil {
		t.Fatalf("mode 0400: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		p := write("open-"+mode.String(), mode, "a:"+keyA)
		_, err := seal.LoadKeyring(p)
		if err == nil {
			t.Fatalf("mode %#o accepted", mode)
		}
		if !strings.Contains(err.Error(), "group or others") || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode %#o: unclear error %q", mode, err)
		}
	}
	bad := write("bad", 0o600, "a:"+keyA[:20])
	if _, err := seal.LoadKeyring(bad); err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), keyA[:20]) {
		t.Fatalf("bad keyring: %v", err)
	}
	if _, err := seal.LoadKeyring(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := seal.LoadKeyring(dir); err == nil {
		t.Fatal("a directory loaded as a keyring")
	}
}

func TestGenerateKeyring(t *testing.T) {
	text, err := seal.GenerateKeyring("k1")
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring(t, text)
	if kr.PrimaryKeyID() != "k1" {
		t.Fatalf("primary %q", kr.PrimaryKeyID())
	}
	other, err := seal.GenerateKeyring("k1")
	if err != nil {
		t.Fatal(err)
	}
	if other == text {
		t.Fatal("two generated keyrings are the same")
	}
	// Keys differ: a secret sealed under one does not open under the other.
	ctx := context.Background()
	sec, err := seal.NewSealer(kr).Seal(ctx, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seal.NewSealer(keyring(t, other)).Open(ctx, sec, nil); err == nil {
		t.Fatal("opened under another generated key")
	}
	for _, id := range []string{"", "a b", "a:b", strings.Repeat("x", 65)} {
		if _, err := seal.GenerateKeyring(id); err == nil {
			t.Fatalf("GenerateKeyring(%q) succeeded", id)
		}
	}
}

func TestContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := seal.NewSealer(keyring(t, "a:"+keyA))
	if _, err := s.Seal(ctx, []byte("x"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Seal with a canceled context: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	s := seal.NewSealer(keyring(t, "a:"+keyA+"\nb:"+keyB))
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			aad := []byte{byte(i)}
			for range 50 {
				sec, err := s.Seal(ctx, aad, aad)
				if err != nil {
					errc <- err
					return
				}
				got, err := s.Open(ctx, sec, aad)
				if err != nil || !bytes.Equal(got, aad) {
					errc <- errors.New("round trip failed")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// fakeWrapper is a KeyWrapper that returns a data key of the wrong size, as
// a broken KMS plugin might.
type fakeWrapper struct{ seal.KeyWrapper }

func (f fakeWrapper) Unwrap(ctx context.Context, id string, w []byte) ([]byte, error) {
	k, err := f.KeyWrapper.Unwrap(ctx, id, w)
	return append(k, 0), err
}

func TestOpenChecksDataKeySize(t *testing.T) {
	ctx := context.Background()
	kr := keyring(t, "a:"+keyA)
	sec, err := seal.NewSealer(kr).Seal(ctx, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seal.NewSealer(fakeWrapper{kr}).Open(ctx, sec, nil); err == nil || !strings.Contains(err.Error(), "33 bytes") {
		t.Fatalf("Open with a 33-byte data key: %v", err)
	}
}

func FuzzParseKeyring(f *testing.F) {
	for _, s := range []string{
		"", "a:" + keyA, "b:" + keyB + "\na:" + keyA + "\n", "# c\n\n a : " + keyA + " \r\n",
		keyA, "a:" + keyA[:10], "a:" + keyA + "\na:" + keyB, ":" + keyA, "a b:" + keyA, "a:\n", "::::",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		kr, err := seal.ParseKeyring(text)
		if err != nil {
			if kr != nil {
				t.Fatal("keyring returned with an error")
			}
			return
		}
		ids := kr.KeyIDs()
		if len(ids) == 0 || ids[0] != kr.PrimaryKeyID() {
			t.Fatalf("ids %q, primary %q", ids, kr.PrimaryKeyID())
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if !seal.ValidKeyID(id) || seen[id] {
				t.Fatalf("invalid or duplicate id %q", id)
			}
			seen[id] = true
		}
		// Whatever parses, works.
		ctx := context.Background()
		s := seal.NewSealer(kr)
		sec, err := s.Seal(ctx, []byte("p"), []byte("aad"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.Open(ctx, sec, []byte("aad")); err != nil || string(got) != "p" {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	})
}

func TestSealerKeyIDs(t *testing.T) {
	s := seal.NewSealer(keyring(t, "new:"+keyB+"\nold:"+keyA+"\n"))
	if s.PrimaryKeyID() != "new" || strings.Join(s.KeyIDs(), ",") != "new,old" {
		t.Fatalf("PrimaryKeyID %q, KeyIDs %q", s.PrimaryKeyID(), s.KeyIDs())
	}
	// A wrapper that cannot list its keys holds its primary, as far as
	// anyone can tell.
	f := seal.NewSealer(fakeWrapper{keyring(t, "new:"+keyB+"\nold:"+keyA+"\n")})
	if ids := f.KeyIDs(); len(ids) != 1 || ids[0] != "new" {
		t.Fatalf("KeyIDs of a non-listing wrapper: %q", ids)
	}
}
