package membership

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
)

// Gossiper runs the membership of an edge node or a scheduler whose gossip
// keys may come from the controller.
//
// With keys of its own (Options.Keys or Options.KeyFile) it joins at once,
// and the controller's keyring is ignored. Otherwise it joins when the
// first config arrives (ApplyControllerKeys), encrypted with the
// controller's keyring if one is set, and follows that keyring's changes
// without a restart. Its methods are safe for concurrent use; before the
// member starts, and with gossip off (Options.Addr empty), Update, Peers and
// Addr do nothing.
type Gossiper struct {
	opts Options
	name string
	meta func() Meta
	log  *slog.Logger

	mu       sync.Mutex
	member   *Member
	starting bool
	closed   bool
	want     [][]byte // the controller's keys, latest
	seeds    []string // join addresses from the controller, latest
	warned   bool
	wg       sync.WaitGroup
}

// NewGossiper returns the gossip of the member called name. With keys of
// its own it starts the member at once, and returns Start's error.
func NewGossiper(opts Options, name string, meta func() Meta, log *slog.Logger) (*Gossiper, error) {
	g := &Gossiper{opts: opts, name: name, meta: meta, log: log}
	if opts.Addr == "" || !g.ownKeys() {
		return g, nil
	}
	m, err := Start(opts.Config(name, meta, log))
	if err != nil {
		return nil, err
	}
	g.member = m
	return g, nil
}

func (g *Gossiper) ownKeys() bool { return len(g.opts.Keys) > 0 || g.opts.KeyFile != "" }

// ApplyControllerKeys takes the keyring of a config the process applied
// (nil: the controller has none). The first call starts the member, in the
// background; later ones change its keys. Memberlist cannot turn
// encryption on at run time: a member that started without keys logs that
// it needs a restart.
func (g *Gossiper) ApplyControllerKeys(keys [][]byte) {
	if g.opts.Addr == "" || g.ownKeys() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	if keys != nil || g.want == nil {
		g.want = keys
	}
	switch {
	case g.member == nil && !g.starting:
		g.starting = true
		g.wg.Add(1)
		go g.start(keys)
	case g.member != nil:
		g.setKeys()
	}
}

// start runs Start off the caller's goroutine: joining may wait for
// unreachable members.
func (g *Gossiper) start(keys [][]byte) {
	defer g.wg.Done()
	cfg := g.opts.Config(g.name, g.meta, g.log)
	cfg.Keys = keys
	g.mu.Lock()
	cfg.Join = append(cfg.Join, g.seeds...)
	g.mu.Unlock()
	if len(keys) == 0 {
		g.log.Warn("gossip is not encrypted: no -gossip-keyring file and no keyring set on the controller (outpostctl node gossip-keyring set)")
	}
	m, err := Start(cfg)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.starting = false
	if err != nil {
		g.log.Error("cannot start gossip", "err", err)
		return
	}
	if g.closed {
		m.Close()
		return
	}
	g.member = m
	g.setKeys() // the keyring may have changed while joining
}

// setKeys applies g.want to the running member. g.mu must be held.
func (g *Gossiper) setKeys() {
	if len(g.want) == 0 {
		return // a keyring is never removed, only replaced
	}
	err := g.member.SetKeys(g.want)
	switch {
	case errors.Is(err, ErrNotEncrypted):
		if !g.warned {
			g.warned = true
			g.log.Warn("the controller set a gossip keyring, but this member's gossip started unencrypted: restart it to encrypt")
		}
	case err != nil:
		g.log.Error("cannot apply the controller's gossip keyring", "err", err)
	}
}

// AddSeeds takes join addresses the controller handed out (other members
// it knows alive). A running member joins them now; a member still to
// start joins them when it starts. The same seeds again do nothing.
func (g *Gossiper) AddSeeds(seeds []string) {
	if g.opts.Addr == "" || len(seeds) == 0 {
		return
	}
	g.mu.Lock()
	if slices.Equal(g.seeds, seeds) {
		g.mu.Unlock()
		return
	}
	g.seeds = slices.Clone(seeds)
	m := g.member
	g.mu.Unlock()
	if m != nil {
		m.Join(seeds)
	}
}

// Member is the running member, or nil.
func (g *Gossiper) Member() *Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.member
}

// Update gossips this member's metadata again.
func (g *Gossiper) Update() {
	if m := g.Member(); m != nil {
		m.Update()
	}
}

// Peers returns the cluster as this member sees it (nil before it starts).
func (g *Gossiper) Peers() []Peer {
	if m := g.Member(); m != nil {
		return m.Peers()
	}
	return nil
}

// Addr is the gossip address, or "" before the member starts.
func (g *Gossiper) Addr() string {
	if m := g.Member(); m != nil {
		return m.Addr()
	}
	return ""
}

// Close leaves the cluster gracefully; a start in progress is waited for
// and undone.
func (g *Gossiper) Close() {
	g.mu.Lock()
	g.closed = true
	m := g.member
	g.member = nil
	g.mu.Unlock()
	if m != nil {
		m.Close()
	}
	g.wg.Wait()
}
