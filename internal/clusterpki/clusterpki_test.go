package clusterpki

import (
	"bytes"
	"strings"
	"testing"
)

var tokenCases = []struct {
	tok, err string
}{
	{FormatJoinToken(bytes.Repeat([]byte{0xab}, 32), "opt_secret-1"), ""},
	{"  " + FormatJoinToken(bytes.Repeat([]byte{1}, 32), "s") + "\n", ""},
	{"", "not a join token"},
	{"opt_abc", "not a join token"},
	{"OPJ1-", "malformed"},
	{"OPJ1-abcd-secret", "malformed"},
	{"OPJ1-" + strings.Repeat("a", 64), "malformed"},
	{"OPJ1-" + strings.Repeat("a", 64) + "-", "malformed"},
	{"OPJ1-" + strings.Repeat("g", 64) + "-s", "malformed"},
}

func TestParseJoinToken(t *testing.T) {
	for _, tt := range tokenCases {
		pin, secret, err := ParseJoinToken(tt.tok)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseJoinToken(%q) = %v, want %q", tt.tok, err, tt.err)
			}
			continue
		}
		if err != nil || len(pin) != 32 || secret == "" {
			t.Errorf("ParseJoinToken(%q) = %x, %q, %v", tt.tok, pin, secret, err)
		}
		if again := FormatJoinToken(pin, secret); again != strings.TrimSpace(tt.tok) {
			t.Errorf("round trip: %q, want %q", again, tt.tok)
		}
	}
	if _, err := ParsePin("sha256:" + strings.Repeat("0", 64)); err != nil {
		t.Error(err)
	}
	if _, err := ParsePin("sha256:00"); err == nil {
		t.Error("a short pin parsed")
	}
}

// FuzzParseJoinToken: Join parses tokens from anyone; it must not panic,
// and what parses must round-trip.
func FuzzParseJoinToken(f *testing.F) {
	for _, tt := range tokenCases {
		f.Add(tt.tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		pin, secret, err := ParseJoinToken(tok)
		if err != nil {
			return
		}
		if len(pin) != 32 || secret == "" {
			t.Fatalf("parsed %q into %x, %q", tok, pin, secret)
		}
		if _, s2, err := ParseJoinToken(FormatJoinToken(pin, secret)); err != nil || s2 != secret {
			t.Fatalf("round trip of %q: %q %v", tok, s2, err)
		}
	})
}
