package membership

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func key(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func start(t *testing.T, name string, keys [][]byte, label string, join ...string) *Member {
	t.Helper()
	m, err := Start(Config{
		Name: name, BindAddr: "127.0.0.1:0", Join: join, Keys: keys, Label: label, Fast: true,
		RejoinInterval: 200 * time.Millisecond,
		Meta:           func() Meta { return Meta{Role: RoleNode, Region: "r-" + name, Capacity: 1} },
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func alive(m *Member) []string {
	var out []string
	for _, p := range m.Peers() {
		if p.Alive {
			out = append(out, p.Name)
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterEncryptionAndLabels(t *testing.T) {
	keys := [][]byte{key(t)}
	a := start(t, "a", keys, "prod")
	defer a.Close()
	b := start(t, "b", keys, "prod", a.Addr())
	defer b.Close()
	c := start(t, "c", keys, "prod", b.Addr())
	defer c.Close()
	eventually(t, "three members", func() bool { return strings.Join(alive(a), ",") == "a,b,c" && strings.Join(alive(c), ",") == "a,b,c" })
	for _, p := range a.Peers() {
		if p.Meta.Region != "r-"+p.Name || p.Meta.Role != RoleNode {
			t.Fatalf("metadata of %s: %+v", p.Name, p.Meta)
		}
	}

	// A member with another key, or another label, cannot join.
	wrongKey := start(t, "x", [][]byte{key(t)}, "prod", a.Addr())
	defer wrongKey.Close()
	wrongLabel := start(t, "y", keys, "staging", a.Addr())
	defer wrongLabel.Close()
	time.Sleep(time.Second)
	if got := strings.Join(alive(a), ","); got != "a,b,c" {
		t.Fatalf("members after intruders tried: %s", got)
	}
	if len(alive(wrongKey)) != 1 || len(alive(wrongLabel)) != 1 {
		t.Fatalf("intruders see %v and %v", alive(wrongKey), alive(wrongLabel))
	}
}

// TestRejoinAfterFailure: a member that failed (no graceful leave) and
// comes back on the same address is joined again by the others' rejoin
// loop, though it was started with nothing to join.
func TestRejoinAfterFailure(t *testing.T) {
	keys := [][]byte{key(t)}
	a := start(t, "a", keys, "")
	defer a.Close()
	b := start(t, "b", keys, "", a.Addr())
	addr := b.Addr()
	eventually(t, "two members", func() bool { return len(alive(a)) == 2 })
	// Fail b without leaving.
	close(b.stop)
	b.wg.Wait()
	_ = b.ml.Shutdown()
	eventually(t, "b declared dead", func() bool { return len(alive(a)) == 1 })
	// Back on the same address, joining nobody.
	b2, err := Start(Config{Name: "b", BindAddr: addr, Keys: keys, Fast: true, RejoinInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	eventually(t, "a to rejoin b", func() bool { return len(alive(a)) == 2 && len(alive(b2)) == 2 })
}

func TestParseKeys(t *testing.T) {
	k := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	keys, err := ParseKeys(strings.NewReader("# primary first\n" + k + "\n\n" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 16)) + "\n"))
	if err != nil || len(keys) != 2 || len(keys[0]) != 32 {
		t.Fatalf("keys %v %v", keys, err)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := ParseKeys(strings.NewReader(bad)); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
	if _, err := (Meta{Role: RoleNode, Region: strings.Repeat("x", 600)}).Encode(); err == nil {
		t.Fatal("oversized metadata accepted")
	}
}
