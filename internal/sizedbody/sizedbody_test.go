package sizedbody

import (
	"bytes"
	"io"
	"testing"
)

func TestParse(t *testing.T) {
	for label, want := range map[string]int64{"1k": 1024, "100k": 102400, "1m": 1 << 20, "64m": 64 << 20, "65536k": 64 << 20} {
		if got, ok := Parse(label); !ok || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", label, got, ok, want)
		}
	}
	for _, label := range []string{"", "k", "0k", "01k", "-1k", "+1k", "1", "1g", "65m", "65537k", "1.5k", "1K", "99999999k", " 1k"} {
		if got, ok := Parse(label); ok {
			t.Errorf("Parse(%q) = %d, want none", label, got)
		}
	}
	if n, ok := Path("/100k.bin"); !ok || n != 102400 {
		t.Errorf("Path(/100k.bin) = %d, %v", n, ok)
	}
	for _, p := range []string{"/100k.txt", "/a/100k.bin", "/100k.bin/", "/.bin", "100k"} {
		if _, ok := Path(p); ok {
			t.Errorf("Path(%q) is a size", p)
		}
	}
}

func TestReader(t *testing.T) {
	seed := []byte("0123456789")
	b, err := io.ReadAll(Reader(seed, 25))
	if err != nil || string(b) != "0123456789012345678901234" {
		t.Fatalf("%q %v", b, err)
	}
	r := Reader(seed, 1<<20)
	if _, err := r.Seek(1<<20-3, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r)
	if want := bytes.Repeat(seed, (1<<20)/10+1)[1<<20-3 : 1<<20]; !bytes.Equal(b, want) {
		t.Fatalf("tail %q, want %q", b, want)
	}
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{"/1k.bin", "/64m.bin", "/0k.bin", "/99999999999999999999k.bin", "/1m.bin/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n, ok := Path(p)
		if ok && (n < 1<<10 || n > MaxBytes) {
			t.Fatalf("Path(%q) = %d", p, n)
		}
	})
}
