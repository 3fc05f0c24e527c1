package membership

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func fps(keys ...[]byte) []string { return fingerprints(keys) }

// keyFile writes keys to path atomically, as Config.KeyFile asks.
func keyFile(t *testing.T, path string, keys ...[]byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# gossip keyring, primary first\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	writeFile(t, path, b.String())
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// flapCounter counts the members memberlist declared dead or gone, seen
// through the events delegate (installed by Config.Tune).
type flapCounter struct {
	memberlist.EventDelegate
	n *atomic.Int64
}

func (f flapCounter) NotifyLeave(n *memberlist.Node) {
	f.n.Add(1)
	f.EventDelegate.NotifyLeave(n)
}

// TestKeyRotationWithoutFlaps rotates the key of a running three-member
// cluster in the three SetKeys steps, [k1,k2], [k2,k1], [k2], one member
// at a time, while every member's view is sampled every 10ms: no member
// ever loses sight of another (nor does memberlist declare any dead).
// After each member's change, metadata each member gossips reaches every
// member, so the cluster really works in each mixed state (with one
// member on [k2] while the others are on [k1], say, it does not). At the
// end a member with k2 only joins, and one with k1 only is refused.
func TestKeyRotationWithoutFlaps(t *testing.T) {
	k1, k2 := key(t), key(t)
	var rev atomic.Int64
	var leaves atomic.Int64
	member := func(name string, keys [][]byte, join ...string) *Member {
		t.Helper()
		m, err := Start(Config{Name: name, BindAddr: "127.0.0.1:0", Join: join, Keys: keys, Label: "prod", Fast: true,
			RejoinInterval: 200 * time.Millisecond, Logger: quiet,
			Meta: func() Meta { return Meta{Role: RoleNode, Revision: rev.Load()} },
			Tune: func(c *memberlist.Config) {
				// A slow probe answer on a busy test machine is not a
				// flap caused by the keys.
				c.ProbeTimeout = 500 * time.Millisecond
				c.ProbeInterval = time.Second // room for the indirect probes after the timeout
				// With the local config's RetransmitMult of 2, news of
				// a fourth member reaches only two others for sure;
				// the rest hear of it at the next push/pull, 15s on.
				// Gossip it as LAN members do, and push/pull sooner.
				c.RetransmitMult = 4
				c.PushPullInterval = 2 * time.Second
				c.Events = flapCounter{EventDelegate: c.Events, n: &leaves}
			}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := member("a", [][]byte{k1})
	defer a.Close()
	b := member("b", [][]byte{k1}, a.Addr())
	defer b.Close()
	c := member("c", [][]byte{k1}, a.Addr())
	defer c.Close()
	cluster := []*Member{a, b, c}
	eventually(t, "three members", func() bool {
		for _, m := range cluster {
			if len(alive(m)) != 3 {
				return false
			}
		}
		return true
	})

	var (
		mu       sync.Mutex
		flaps    []string
		stop     = make(chan struct{})
		sampling sync.WaitGroup
		stopOnce sync.Once
	)
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, m := range cluster {
				if got := alive(m); len(got) < 3 {
					mu.Lock()
					flaps = append(flaps, fmt.Sprintf("%s saw %v alive at %s", m.cfg.Name, got, time.Now().Format("15:04:05.000")))
					mu.Unlock()
				}
			}
		}
	}()
	stopSampling := func() {
		stopOnce.Do(func() { close(stop) })
		sampling.Wait()
	}
	defer stopSampling()
	defer func() {
		if t.Failed() {
			stopSampling()
			t.Logf("flaps seen: %v", flaps)
		}
	}()

	// gossiped waits until every member has the metadata every other one
	// gossiped after Update, which they encrypt with their primary key.
	gossiped := func(step string) {
		t.Helper()
		r := rev.Add(1)
		var updates sync.WaitGroup
		for _, m := range cluster {
			updates.Go(m.Update) // each returns once its news is gossiped
		}
		updates.Wait()
		eventually(t, "metadata gossiped after "+step, func() bool {
			for _, m := range cluster {
				ps := m.Peers()
				if len(ps) < 3 {
					return false
				}
				for _, p := range ps {
					if p.Meta.Revision != r {
						return false
					}
				}
			}
			return true
		})
	}
	gossiped("start")
	for _, step := range [][][]byte{{k1, k2}, {k2, k1}, {k2}} {
		for _, m := range cluster {
			if err := m.SetKeys(step); err != nil {
				t.Fatal(err)
			}
			if got := m.KeyFingerprints(); !slices.Equal(got, fps(step...)) {
				t.Fatalf("%s: keys %v after SetKeys(%v)", m.cfg.Name, got, fps(step...))
			}
			gossiped(fmt.Sprintf("%s's SetKeys(%v)", m.cfg.Name, fps(step...)))
		}
	}
	stopSampling()
	if len(flaps) > 0 || leaves.Load() > 0 {
		t.Fatalf("membership flapped during the rotation (%d members declared dead or gone): %v", leaves.Load(), flaps)
	}

	// A member with the old key only is refused (its join's state
	// exchange cannot be decrypted); one with the new key joins.
	old := member("old", [][]byte{k1})
	defer old.Close()
	if n, err := old.ml.Join([]string{a.Addr()}); err == nil || n != 0 {
		t.Fatalf("a member with the old key joined %d: %v", n, err)
	}
	newer := member("new", [][]byte{k2}, a.Addr())
	defer newer.Close()
	cluster = append(cluster, newer)
	eventually(t, "the member with the new key to join", func() bool {
		for _, m := range cluster {
			if strings.Join(alive(m), ",") != "a,b,c,new" {
				return false
			}
		}
		return true
	})
	if got := alive(old); len(got) != 1 {
		t.Fatalf("the member with the old key sees %v", got)
	}
}

// TestKeyFileReload: two members share a keyring file and follow its
// rewrites (a rotation, k1 to k2) within a bound; a garbage file, then a
// missing one, are logged without key material and keep the keys.
func TestKeyFileReload(t *testing.T) {
	k1, k2 := key(t), key(t)
	path := filepath.Join(t.TempDir(), "gossip.keys")
	keyFile(t, path, k1)
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	member := func(name string, join ...string) *Member {
		t.Helper()
		m, err := Start(Config{Name: name, BindAddr: "127.0.0.1:0", Join: join, KeyFile: path, KeyFileInterval: 20 * time.Millisecond,
			Label: "prod", Fast: true, RejoinInterval: 200 * time.Millisecond, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := member("a")
	defer a.Close()
	b := member("b", a.Addr())
	defer b.Close()
	both := []*Member{a, b}
	for _, m := range both {
		if got := m.KeyFingerprints(); !slices.Equal(got, fps(k1)) {
			t.Fatalf("%s started with keys %v, not the file's %v", m.cfg.Name, got, fps(k1))
		}
	}
	eventually(t, "two members", func() bool { return len(alive(a)) == 2 && len(alive(b)) == 2 })

	follows := func(keys ...[]byte) {
		t.Helper()
		eventually(t, fmt.Sprintf("keys %v", fps(keys...)), func() bool {
			return slices.Equal(a.KeyFingerprints(), fps(keys...)) && slices.Equal(b.KeyFingerprints(), fps(keys...))
		})
	}
	keyFile(t, path, k2, k1)
	follows(k2, k1)
	keyFile(t, path, k2)
	follows(k2)

	// Unusable files: each member logs it, and keeps its keys.
	warned := func(what string) {
		t.Helper()
		eventually(t, "both members to log "+what, func() bool {
			n := 0
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, what) && (strings.Contains(line, "gossip=a") || strings.Contains(line, "gossip=b")) {
					n++
				}
			}
			return n >= 2
		})
	}
	writeFile(t, path, "not a keyring\n")
	warned("gossip keyring file not usable")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	warned("gossip keyring file unreadable")
	for _, m := range both {
		if got := m.KeyFingerprints(); !slices.Equal(got, fps(k2)) {
			t.Fatalf("%s: keys %v after bad keyring files", m.cfg.Name, got)
		}
	}
	if len(alive(a)) != 2 || len(alive(b)) != 2 {
		t.Fatalf("members after the rotation by file: %v and %v", alive(a), alive(b))
	}
	out := logs.String()
	for _, k := range [][]byte{k1, k2} {
		if strings.Contains(out, base64.StdEncoding.EncodeToString(k)) || strings.Contains(out, hex.EncodeToString(k)) ||
			bytes.Contains([]byte(out), k) {
			t.Fatal("a gossip key was logged")
		}
	}
	if !strings.Contains(out, fps(k2)[0]) {
		t.Fatal("key changes were not logged with fingerprints")
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSetKeys: SetKeys reorders and removes keys anywhere in the keyring,
// and changes nothing when it fails.
func TestSetKeys(t *testing.T) {
	k1, k2, k3 := key(t), key(t), key(t)
	m := start(t, "a", [][]byte{k1}, "")
	defer m.Close()
	for _, step := range [][][]byte{
		{k1, k2, k3},
		{k3, k1},     // k2 removed from the middle
		{k2, k3, k1}, // k2 added back as primary
		{k2, k1, k3}, // secondaries reordered
		{k1, k1, k3}, // a duplicate counts once
		{k3},
	} {
		if err := m.SetKeys(step); err != nil {
			t.Fatal(err)
		}
		want := fps(slices.CompactFunc(slices.Clone(step), bytes.Equal)...)
		if got := m.KeyFingerprints(); !slices.Equal(got, want) {
			t.Fatalf("SetKeys(%v): keys %v", fps(step...), got)
		}
	}

	for name, keys := range map[string][][]byte{
		"no keys":         nil,
		"empty":           {},
		"short key":       {[]byte("short")},
		"short secondary": {k1, make([]byte, 20)},
		"empty key":       {k1, {}},
	} {
		if err := m.SetKeys(keys); err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if got := m.KeyFingerprints(); !slices.Equal(got, fps(k3)) {
			t.Fatalf("%s: keys %v after a refused SetKeys", name, got)
		}
	}

	plain := start(t, "plain", nil, "")
	defer plain.Close()
	if err := plain.SetKeys([][]byte{k1}); !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("SetKeys on a member without encryption: %v", err)
	}
	if got := plain.KeyFingerprints(); got != nil {
		t.Fatalf("a member without encryption has keys %v", got)
	}
	if fp := KeyFingerprint(k1); len(fp) != 16 || strings.Contains(fp, hex.EncodeToString(k1[:4])) {
		t.Fatalf("fingerprint %q", fp)
	}
}

// TestKeyFileOptions: a bad keyring file is an error at Start, at flag
// parsing, and from Validate when it comes from the environment; a good
// one reaches Config as KeyFile.
func TestKeyFileOptions(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.keys"), filepath.Join(dir, "bad.keys")
	keyFile(t, good, key(t))
	writeFile(t, bad, "not a keyring\n")
	missing := filepath.Join(dir, "missing.keys")

	for _, path := range []string{bad, missing} {
		if m, err := Start(Config{Name: "x", BindAddr: "127.0.0.1:0", KeyFile: path, Logger: quiet}); err == nil {
			m.Close()
			t.Fatalf("Start with keyring file %s", path)
		}
	}

	parse := func(env string, args ...string) (Options, error) {
		t.Setenv("OUTPOST_GOSSIP_KEYRING", env)
		var o Options
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(new(bytes.Buffer))
		o.RegisterFlags(fs)
		return o, fs.Parse(args)
	}
	if _, err := parse("", "-gossip-keyring", bad); err == nil {
		t.Fatal("a bad -gossip-keyring parsed")
	}
	o, err := parse(missing)
	if err != nil || o.Validate() == nil {
		t.Fatalf("a missing OUTPOST_GOSSIP_KEYRING: parse %v, validate %v", err, o.Validate())
	}
	o, err = parse(bad, "-gossip-keyring", good)
	if err != nil || o.Validate() != nil || o.Config("x", nil, quiet).KeyFile != good {
		t.Fatalf("-gossip-keyring over a bad OUTPOST_GOSSIP_KEYRING: parse %v, validate %v, %+v", err, o.Validate(), o)
	}
	o, err = parse(good)
	if err != nil || o.Validate() != nil || o.Config("x", nil, quiet).KeyFile != good {
		t.Fatalf("OUTPOST_GOSSIP_KEYRING: parse %v, validate %v, %+v", err, o.Validate(), o)
	}
	if err := (Options{Keys: [][]byte{[]byte("short")}}).Validate(); err == nil {
		t.Fatal("a short key validated")
	}
}
