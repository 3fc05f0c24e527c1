// Package membership is the gossip layer of edge nodes and schedulers, on
// hashicorp/memberlist: encrypted (AES-GCM keyring) and labelled gossip,
// each member's routing metadata (Meta), and a rejoin loop, because plain
// memberlist forgets peers it declared dead and never rejoins them after a
// partition heals.
package membership

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Roles of members.
const (
	RoleNode      = "node"
	RoleScheduler = "scheduler"
)

// Meta is what a member tells the others about itself. It must encode to
// at most memberlist.MetaMaxSize (512) bytes.
type Meta struct {
	Role      string  `json:"role"`
	Region    string  `json:"region,omitempty"`
	Latitude  float64 `json:"lat,omitempty"`
	Longitude float64 `json:"lon,omitempty"`
	HTTP      string  `json:"http,omitempty"`
	HTTPS     string  `json:"https,omitempty"`
	Capacity  float64 `json:"cap,omitempty"`
	Load      float64 `json:"load,omitempty"`
	Revision  int64   `json:"rev,omitempty"`
	Draining  bool    `json:"drain,omitempty"`
}

// Encode marshals m, refusing metadata too large to gossip.
func (m Meta) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("member metadata is %d bytes, over memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// DecodeMeta unmarshals metadata gossiped by another member.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	err := json.Unmarshal(b, &m)
	return m, err
}

// Config is what a member needs.
type Config struct {
	// Name is unique in the cluster.
	Name string
	// BindAddr is host:port for gossip (UDP and TCP); port 0 picks one.
	BindAddr string
	// AdvertiseAddr is host:port others reach this member at; default the
	// bound address.
	AdvertiseAddr string
	// Join are addresses of members to join at start and whenever the
	// rejoin loop finds members missing.
	Join []string
	// Keys encrypt gossip (AES-GCM; 16, 24 or 32 bytes each); the first is
	// used to encrypt, all are tried to decrypt, so keys rotate without
	// membership flaps: add the new key everywhere, make it first, then
	// remove the old one. Empty means no encryption (tests only).
	Keys [][]byte
	// Label is the cluster label; members with another label cannot join.
	Label string
	// Meta returns this member's metadata; it is called on every gossip
	// of local state, so it must be quick and safe for concurrent use.
	Meta func() Meta
	// RejoinInterval is how often missing members are joined again.
	// Default 10s.
	RejoinInterval time.Duration
	// Fast uses memberlist's local-network timings (tests).
	Fast   bool
	Logger *slog.Logger
}

// LoadKeys reads a gossip keyring file: one base64 key per line, the
// first one primary; blank lines and '#' comments are ignored.
func LoadKeys(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseKeys(f)
}

// ParseKeys parses keyring text (see LoadKeys).
func ParseKeys(r io.Reader) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(t)
		if err != nil {
			return nil, fmt.Errorf("gossip keyring line %d: not base64", line)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("gossip keyring line %d: a key must be 16, 24 or 32 bytes, not %d", line, n)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("gossip keyring: no keys")
	}
	return keys, nil
}

// Member is this process in the cluster.
type Member struct {
	cfg  Config
	ml   *memberlist.Memberlist
	log  *slog.Logger
	stop chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	seen map[string]string // name → address of every member ever seen
}

// Peer is another member as gossip knows it.
type Peer struct {
	Name  string
	Addr  string
	Meta  Meta
	Alive bool
}

// Start joins the cluster (members in cfg.Join that answer; none answering
// is not an error: the rejoin loop keeps trying).
func Start(cfg Config) (*Member, error) {
	if cfg.Name == "" {
		return nil, errors.New("membership: a name is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = 10 * time.Second
	}
	host, portText, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip address: %w", err)
	}
	port, _ := strconv.Atoi(portText)
	mc := memberlist.DefaultLANConfig()
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
	}
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := net.SplitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip advertise address: %w", err)
		}
		mc.AdvertiseAddr = ah
		mc.AdvertisePort, _ = strconv.Atoi(ap)
	}
	mc.Label = cfg.Label
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	m := &Member{cfg: cfg, log: cfg.Logger.With("gossip", cfg.Name), stop: make(chan struct{}), seen: map[string]string{}}
	mc.Delegate = &delegate{m: m}
	mc.Events = &events{m: m}
	mc.Logger = log.New(&slogWriter{log: m.log}, "", 0)
	if m.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	m.join()
	m.wg.Add(1)
	go m.rejoinLoop()
	return m, nil
}

// Addr is the gossip address this member is reachable at.
func (m *Member) Addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Peers returns every member gossip knows alive, this one included, by
// name.
func (m *Member) Peers() []Peer {
	var out []Peer
	for _, n := range m.ml.Members() {
		meta, err := DecodeMeta(n.Meta)
		if err != nil {
			continue
		}
		out = append(out, Peer{Name: n.Name, Addr: n.Address(), Meta: meta, Alive: n.State == memberlist.StateAlive})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Update gossips this member's metadata again (after Meta changed).
func (m *Member) Update() {
	if err := m.ml.UpdateNode(5 * time.Second); err != nil {
		m.log.Debug("gossip metadata update", "err", err)
	}
}

// Close leaves the cluster gracefully and stops gossiping.
func (m *Member) Close() {
	close(m.stop)
	m.wg.Wait()
	_ = m.ml.Leave(2 * time.Second)
	_ = m.ml.Shutdown()
}

// join contacts the configured addresses and every member seen before
// that is not alive now.
func (m *Member) join() {
	alive := map[string]bool{}
	for _, n := range m.ml.Members() {
		if n.State == memberlist.StateAlive {
			alive[n.Name] = true
		}
	}
	targets := append([]string(nil), m.cfg.Join...)
	m.mu.Lock()
	for name, addr := range m.seen {
		if !alive[name] && name != m.cfg.Name {
			targets = append(targets, addr)
		}
	}
	m.mu.Unlock()
	if len(targets) == 0 {
		return
	}
	if _, err := m.ml.Join(targets); err != nil {
		m.log.Debug("gossip join", "targets", targets, "err", err)
	}
}

// rejoinLoop heals partitions longer than memberlist's dead-node reap time.
func (m *Member) rejoinLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			if m.missing() {
				m.join()
			}
		}
	}
}

// missing reports whether a configured or previously seen member is not
// alive.
func (m *Member) missing() bool {
	alive := map[string]bool{}
	addrs := map[string]bool{}
	for _, n := range m.ml.Members() {
		if n.State == memberlist.StateAlive {
			alive[n.Name] = true
			addrs[n.Address()] = true
		}
	}
	for _, a := range m.cfg.Join {
		if !addrs[a] {
			return true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.seen {
		if !alive[name] {
			return true
		}
	}
	return false
}

// delegate gives memberlist this member's metadata. memberlist calls it
// from its own goroutines: NodeMeta must be quick.
type delegate struct{ m *Member }

func (d *delegate) NodeMeta(limit int) []byte {
	meta := Meta{Role: RoleNode}
	if d.m.cfg.Meta != nil {
		meta = d.m.cfg.Meta()
	}
	b, err := meta.Encode()
	if err != nil || len(b) > limit {
		d.m.log.Error("gossip metadata too large; sending none", "err", err)
		return nil
	}
	return b
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// events remembers every member seen, for the rejoin loop.
type events struct{ m *Member }

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.m.mu.Lock()
	e.m.seen[n.Name] = n.Address()
	e.m.mu.Unlock()
	e.m.log.Debug("member joined", "member", n.Name, "addr", n.Address())
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	if n.State == memberlist.StateLeft {
		// Left on purpose: do not try to bring it back.
		e.m.mu.Lock()
		delete(e.m.seen, n.Name)
		e.m.mu.Unlock()
	}
	e.m.log.Debug("member left or failed", "member", n.Name, "state", n.State)
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	e.m.mu.Lock()
	e.m.seen[n.Name] = n.Address()
	e.m.mu.Unlock()
}

// slogWriter routes memberlist's log lines to slog at debug level (it logs
// routine probe failures as warnings).
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Options are the gossip settings an operator gives a node or scheduler.
type Options struct {
	// Addr is the host:port to gossip on; "" disables gossip.
	Addr string
	// Join are gossip addresses of members to join.
	Join []string
	// Keys encrypt gossip (see Config.Keys).
	Keys [][]byte
	// Label is the cluster label.
	Label string
}

// RegisterFlags binds the options to -gossip, -gossip-join,
// -gossip-keyring and -gossip-label, with OUTPOST_GOSSIP_* environment
// defaults.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Addr, "gossip", os.Getenv("OUTPOST_GOSSIP_ADDR"), "gossip (memberlist) host:port; empty disables (env OUTPOST_GOSSIP_ADDR)")
	o.Join = splitList(os.Getenv("OUTPOST_GOSSIP_JOIN"))
	fs.Func("gossip-join", "comma-separated gossip addresses of members to join (env OUTPOST_GOSSIP_JOIN)", func(s string) error {
		o.Join = splitList(s)
		return nil
	})
	fs.Func("gossip-keyring", "file of base64 gossip keys, one per line, the first primary (env OUTPOST_GOSSIP_KEYRING)", func(path string) error {
		keys, err := LoadKeys(path)
		o.Keys = keys
		return err
	})
	if path := os.Getenv("OUTPOST_GOSSIP_KEYRING"); path != "" {
		o.Keys, _ = LoadKeys(path)
	}
	label := os.Getenv("OUTPOST_GOSSIP_LABEL")
	if label == "" {
		label = "outpost"
	}
	fs.StringVar(&o.Label, "gossip-label", label, "gossip cluster label; members with another label cannot join (env OUTPOST_GOSSIP_LABEL)")
}

// Config returns a member configuration with these options.
func (o Options) Config(name string, meta func() Meta, log *slog.Logger) Config {
	return Config{Name: name, BindAddr: o.Addr, Join: o.Join, Keys: o.Keys, Label: o.Label, Meta: meta, Logger: log}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
