// Package membership is the gossip layer of edge nodes and schedulers, on
// hashicorp/memberlist: encrypted (AES-GCM keyring) and labelled gossip,
// each member's routing metadata (Meta), and a rejoin loop, because plain
// memberlist forgets peers it declared dead and never rejoins them after a
// partition heals. Gossip keys rotate at run time (Member.SetKeys, or a
// watched keyring file, Config.KeyFile) without membership flaps.
package membership

import (
	"bufio"
	"crypto/sha256"
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
	// remove the old one (see Member.SetKeys). Empty, with no KeyFile,
	// means no encryption (tests only), which cannot be turned on later
	// without a restart.
	Keys [][]byte
	// KeyFile is a keyring file (format of LoadKeys) that is watched: when
	// Keys is empty, Start reads the keys from it (an unreadable or bad
	// file is then an error), and whenever its content changes afterwards
	// the new keys are applied with SetKeys, so keys rotate by rewriting
	// the file on every member, one step at a time. Replace the file
	// atomically (write a new one and rename it over the old), or a
	// half-written file may be read. A file that cannot be read or parsed
	// after Start is logged, without key material, and ignored: the
	// current keys stay. When Keys is also set, Keys are used at Start and
	// the file's keys replace them at its first read.
	KeyFile string
	// KeyFileInterval is how often KeyFile is read to see whether it
	// changed. Default 5s.
	KeyFileInterval time.Duration
	// Label is the cluster label; members with another label cannot join.
	Label string
	// Meta returns this member's metadata; it is called on every gossip
	// of local state, so it must be quick and safe for concurrent use.
	Meta func() Meta
	// RejoinInterval is how often missing members are joined again.
	// Default 10s.
	RejoinInterval time.Duration
	// Fast uses memberlist's local-network timings (tests).
	Fast bool
	// Transport, optional, carries gossip instead of the UDP and TCP
	// transport memberlist creates on BindAddr: tests wrap
	// memberlist.NetTransport in it to cut the network, and unusual
	// networks may bring their own. It must be listening already: BindAddr
	// is then ignored, and the member advertises what the transport's
	// FinalAdvertiseAddr returns for AdvertiseAddr (empty: the transport's
	// own address). The member shuts the transport down with itself; if
	// Start fails, the caller shuts it down.
	Transport memberlist.NodeAwareTransport
	// Tune, optional, adjusts memberlist's configuration last, just before
	// memberlist is created: for tests and unusual networks (timings such
	// as ProbeInterval, SuspicionMult or GossipToTheDeadTime). It may wrap
	// Delegate and Events, but the wrappers must call the ones it found
	// (the rejoin loop and metadata depend on them), and it must not
	// replace Keyring, Transport, Name or the addresses.
	Tune   func(*memberlist.Config)
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

	// keyring is memberlist's, nil when gossip is not encrypted; keyMu
	// serializes changes to it (see SetKeys).
	keyring *memberlist.Keyring
	keyMu   sync.Mutex

	// mu guards seen and live, which the events delegate keeps: memberlist
	// rewrites the Nodes that Members returns in place, under a lock of
	// its own that is held only while it calls the events delegate
	// (hashicorp/memberlist#306), so their fields are read there only.
	mu   sync.Mutex
	seen map[string]string   // name → address of every member ever seen
	live map[string]livePeer // name → every member not dead or left, this one included
}

// livePeer is a member in Member.live.
type livePeer struct {
	Peer
	metaOK bool // Meta decoded
}

// Peer is another member as gossip knows it.
type Peer struct {
	Name string
	Addr string
	Meta Meta
	// Alive is true for every member Peers returns: memberlist keeps a
	// suspected member alive until it is declared dead, and then Peers
	// leaves it out.
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
	if cfg.KeyFileInterval <= 0 {
		cfg.KeyFileInterval = 5 * time.Second
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		// Probe every 500 ms, and declare a suspected member dead after 2
		// probe intervals (times log10 of the cluster size) on the first
		// suspicion. With the local profile's 1 s and 3 (and Lifeguard
		// waiting for a confirmation before it shortens the timer) a
		// killed node took 4 to 6 s to leave the schedulers' answers in
		// the compose fault test; with 1 s and 2, 3 to 5.3 s; with these,
		// 1.3 to 2.2 s. A live member refutes a suspicion by gossip (every
		// 100 ms) well within the 1 s on a fast network.
		mc.ProbeInterval = 500 * time.Millisecond
		mc.SuspicionMult = 2
	}
	// Retransmit broadcasts (a member's death above all) at least as often
	// as on a LAN: with the local profile's 2, a small cluster's scheduler
	// can miss the news and wait for its own, longer, suspicion timer.
	mc.RetransmitMult = max(mc.RetransmitMult, 4)
	mc.Name = cfg.Name
	var adHost string
	var adPort int
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := net.SplitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip advertise address: %w", err)
		}
		adHost = ah
		adPort, _ = strconv.Atoi(ap)
	}
	if cfg.Transport != nil {
		// memberlist takes the port of join addresses without one, and of
		// some messages, from BindPort: keep it the advertised one.
		ip, port, err := cfg.Transport.FinalAdvertiseAddr(adHost, adPort)
		if err != nil {
			return nil, fmt.Errorf("gossip transport address: %w", err)
		}
		mc.Transport = cfg.Transport
		mc.BindAddr, mc.BindPort = ip.String(), port
		mc.AdvertiseAddr, mc.AdvertisePort = ip.String(), port
	} else {
		host, portText, err := net.SplitHostPort(cfg.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip address: %w", err)
		}
		port, _ := strconv.Atoi(portText)
		mc.BindAddr, mc.BindPort = host, port
		mc.AdvertiseAddr, mc.AdvertisePort = adHost, adPort
	}
	mc.Label = cfg.Label
	keys := cfg.Keys
	var keyFileHash [sha256.Size]byte
	if cfg.KeyFile != "" && len(keys) == 0 {
		var err error
		if keys, keyFileHash, err = readKeyFile(cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	if len(keys) > 0 {
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	m := &Member{cfg: cfg, log: cfg.Logger.With("gossip", cfg.Name), stop: make(chan struct{}), seen: map[string]string{}, live: map[string]livePeer{}}
	mc.Delegate = &delegate{m: m}
	mc.Events = &events{m: m}
	mc.Logger = log.New(&slogWriter{log: m.log}, "", 0)
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	var err error
	if m.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if mc.EncryptionEnabled() {
		m.keyring = mc.Keyring
	}
	m.join()
	m.wg.Add(1)
	go m.rejoinLoop()
	if cfg.KeyFile != "" {
		m.wg.Add(1)
		go m.watchKeyFile(keyFileHash)
	}
	return m, nil
}

// Addr is the gossip address this member is reachable at.
func (m *Member) Addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Peers returns every member gossip knows alive, this one included, by
// name; members whose metadata does not decode are left out. It is safe
// for concurrent use with gossip.
func (m *Member) Peers() []Peer {
	m.mu.Lock()
	out := make([]Peer, 0, len(m.live))
	for _, p := range m.live {
		if p.metaOK {
			out = append(out, p.Peer)
		}
	}
	m.mu.Unlock()
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

// Join contacts members at addrs (host:port), as the addresses of
// Config.Join are at start: none answering is not an error. Members met
// this way are rejoined after a partition like any other.
func (m *Member) Join(addrs []string) {
	if _, err := m.ml.Join(addrs); err != nil {
		m.log.Debug("gossip join", "targets", addrs, "err", err)
	}
}

// Shutdown stops gossiping without announcing a leave, as a crash would:
// the others find this member failed after memberlist's suspicion timeout.
// Use Close to leave gracefully.
func (m *Member) Shutdown() {
	close(m.stop)
	m.wg.Wait()
	_ = m.ml.Shutdown()
}

// join contacts the configured addresses and every member seen before
// that is not alive now.
func (m *Member) join() {
	targets := append([]string(nil), m.cfg.Join...)
	m.mu.Lock()
	for name, addr := range m.seen {
		if _, ok := m.live[name]; !ok && name != m.cfg.Name {
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
	m.mu.Lock()
	defer m.mu.Unlock()
	addrs := map[string]bool{}
	for _, p := range m.live {
		addrs[p.Addr] = true
	}
	for _, a := range m.cfg.Join {
		if !addrs[a] {
			return true
		}
	}
	for name := range m.seen {
		if _, ok := m.live[name]; !ok {
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

// events keeps the members alive now, for Peers, and every member seen,
// for the rejoin loop. memberlist calls it with its node lock held, the
// only time n's fields are safe to read: it copies what it needs.
type events struct{ m *Member }

func (e *events) NotifyJoin(n *memberlist.Node) {
	addr := e.set(n)
	e.m.log.Debug("member joined", "member", n.Name, "addr", addr)
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.m.mu.Lock()
	delete(e.m.live, n.Name)
	// Left on purpose: do not try to bring it back. (memberlist v0.7.0
	// never sets Node.State, so this does not happen: a member that left
	// cannot be told here from one that failed, and the rejoin loop keeps
	// trying both.)
	if n.State == memberlist.StateLeft {
		delete(e.m.seen, n.Name)
	}
	e.m.mu.Unlock()
	e.m.log.Debug("member left or failed", "member", n.Name)
}

func (e *events) NotifyUpdate(n *memberlist.Node) { e.set(n) }

// set records n alive, returning its address.
func (e *events) set(n *memberlist.Node) string {
	addr := n.Address()
	meta, err := DecodeMeta(n.Meta)
	e.m.mu.Lock()
	e.m.seen[n.Name] = addr
	e.m.live[n.Name] = livePeer{Peer{Name: n.Name, Addr: addr, Meta: meta, Alive: true}, err == nil}
	e.m.mu.Unlock()
	return addr
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
	// Keys encrypt gossip (see Config.Keys), for callers that hold the
	// keys themselves; operators give a KeyFile instead.
	Keys [][]byte
	// KeyFile is a keyring file, read at start and watched for changes
	// (see Config.KeyFile).
	KeyFile string
	// Label is the cluster label.
	Label string
	// Local uses memberlist's local-network timings (faster failure
	// detection, for members on one fast network) instead of its LAN ones.
	Local bool

	// envErr is what RegisterFlags found wrong in the environment, for
	// Validate.
	envErr error
}

// RegisterFlags binds the options to -gossip, -gossip-join,
// -gossip-keyring and -gossip-label, with OUTPOST_GOSSIP_* environment
// defaults. -gossip-keyring PATH (or OUTPOST_GOSSIP_KEYRING) sets KeyFile;
// the file is checked now: a bad one given by flag fails flag parsing, one
// given by the environment is reported by Validate (flag.FlagSet cannot
// fail on a default), unless the flag overrides it.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Addr, "gossip", os.Getenv("OUTPOST_GOSSIP_ADDR"), "gossip (memberlist) host:port; empty disables (env OUTPOST_GOSSIP_ADDR)")
	o.Join = splitList(os.Getenv("OUTPOST_GOSSIP_JOIN"))
	fs.Func("gossip-join", "comma-separated gossip addresses of members to join (env OUTPOST_GOSSIP_JOIN)", func(s string) error {
		o.Join = splitList(s)
		return nil
	})
	o.envErr = nil
	if path := os.Getenv("OUTPOST_GOSSIP_KEYRING"); path != "" {
		o.KeyFile = path
		if _, err := LoadKeys(path); err != nil {
			o.envErr = fmt.Errorf("OUTPOST_GOSSIP_KEYRING: %w", err)
		}
	}
	fs.Func("gossip-keyring", "file of base64 gossip keys, one per line, the first primary; re-read when it changes (env OUTPOST_GOSSIP_KEYRING)", func(path string) error {
		if _, err := LoadKeys(path); err != nil {
			return err
		}
		o.KeyFile, o.envErr = path, nil
		return nil
	})
	label := os.Getenv("OUTPOST_GOSSIP_LABEL")
	if label == "" {
		label = "outpost"
	}
	fs.BoolVar(&o.Local, "gossip-local", os.Getenv("OUTPOST_GOSSIP_LOCAL") == "true", "use memberlist's local-network timings (500 ms probes, 200 ms timeouts, 1 s suspicion) for faster failure detection on a fast network (env OUTPOST_GOSSIP_LOCAL=true)")
	fs.StringVar(&o.Label, "gossip-label", label, "gossip cluster label; members with another label cannot join (env OUTPOST_GOSSIP_LABEL)")
}

// Validate reports options that cannot work: a keyring file from
// OUTPOST_GOSSIP_KEYRING that RegisterFlags could not use, or Keys of the
// wrong size. Call it after parsing the flags. (Start would fail on such a
// keyring file too, later.)
func (o Options) Validate() error {
	if o.envErr != nil {
		return o.envErr
	}
	if len(o.Keys) > 0 {
		if _, err := checkKeys(o.Keys); err != nil {
			return err
		}
	}
	return nil
}

// Config returns a member configuration with these options.
func (o Options) Config(name string, meta func() Meta, log *slog.Logger) Config {
	return Config{Name: name, BindAddr: o.Addr, Join: o.Join, Keys: o.Keys, KeyFile: o.KeyFile, Label: o.Label, Fast: o.Local, Meta: meta, Logger: log}
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
