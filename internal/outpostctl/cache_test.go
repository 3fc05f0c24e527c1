package outpostctl

import (
	"testing"
	"time"
)

func TestParseTTL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"30s", 30 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"7d", 7 * day, true},
		{"365d", 365 * day, true},
		{"1d12h", 36 * time.Hour, true},
		{"0d", 0, true},
		{"", 0, false},
		{"d", 0, false},
		{"7", 0, false},
		{"-1h", 0, false},
		{"1d-1h", 0, false},
		{"1.5d", 0, false},
		{"7days", 0, false},
		{"1w", 0, false},
		{"1d1d", 0, false},
	} {
		got, err := parseTTL(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseTTL(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for d, want := range map[time.Duration]string{0: "0 (not cached)", 7 * day: "7d", 36 * time.Hour: "36h0m0s", 90 * time.Second: "1m30s"} {
		if got := formatTTL(d); got != want {
			t.Errorf("formatTTL(%v) = %q, want %q", d, got, want)
		}
	}
}
