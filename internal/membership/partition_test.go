package membership

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var quiet = slog.New(slog.DiscardHandler)

// partition cuts the network between groups of members while on is set:
// the cutTransports of its members ask it about every packet and stream.
type partition struct {
	on    atomic.Bool
	mu    sync.Mutex
	group map[string]int // gossip address → group
}

func (p *partition) add(addr string, group int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.group[addr] = group
}

// cut reports whether traffic from one address to another is cut now.
func (p *partition) cut(from, to string) bool {
	if !p.on.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	gf, okf := p.group[from]
	gt, okt := p.group[to]
	return okf && okt && gf != gt
}

// cutTransport is memberlist's UDP and TCP transport on 127.0.0.1, cut by
// a partition: packets to the other side are dropped when sent, and
// packets from it dropped when received (filtered on their From address);
// streams to the other side are refused when dialled. Incoming streams
// cannot be filtered the same way (a stream's remote address is the
// dialler's ephemeral port, not its gossip address), so the partition
// relies on every member's transport refusing to dial across it.
type cutTransport struct {
	*memberlist.NetTransport
	self string
	p    *partition

	packets chan *memberlist.Packet
	done    chan struct{} // closed by Shutdown: stop handing packets on
	drained chan struct{} // closed once the NetTransport is down
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

var _ memberlist.NodeAwareTransport = (*cutTransport)(nil)

func newCutTransport(t *testing.T, p *partition, group int) *cutTransport {
	t.Helper()
	var nt *memberlist.NetTransport
	var err error
	// Port 0 picks a TCP port; the UDP one may be taken: retry, as
	// memberlist does.
	for range 10 {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"}, Logger: log.New(io.Discard, "", 0),
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	ct := &cutTransport{
		NetTransport: nt, self: net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort())), p: p,
		packets: make(chan *memberlist.Packet), done: make(chan struct{}), drained: make(chan struct{}),
	}
	p.add(ct.self, group)
	ct.wg.Add(1)
	go ct.forward()
	return ct
}

// forward hands received packets on to memberlist, but those from the
// other side. It drains the NetTransport until it is down: its listener
// blocks on handing over a packet, and its Shutdown waits for that.
func (ct *cutTransport) forward() {
	defer ct.wg.Done()
	for {
		select {
		case pk := <-ct.NetTransport.PacketCh():
			if ct.p.cut(pk.From.String(), ct.self) {
				continue
			}
			select {
			case ct.packets <- pk:
			case <-ct.done:
			}
		case <-ct.drained:
			return
		}
	}
}

func (ct *cutTransport) PacketCh() <-chan *memberlist.Packet { return ct.packets }

func (ct *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return ct.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (ct *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if ct.p.cut(ct.self, a.Addr) {
		return time.Now(), nil // lost on the way, as UDP may be
	}
	return ct.NetTransport.WriteToAddress(b, a)
}

func (ct *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return ct.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (ct *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if ct.p.cut(ct.self, a.Addr) {
		return nil, fmt.Errorf("dial %s: network partitioned (test)", a.Addr)
	}
	return ct.NetTransport.DialAddressTimeout(a, timeout)
}

func (ct *cutTransport) Shutdown() error {
	ct.once.Do(func() {
		close(ct.done)
		ct.err = ct.NetTransport.Shutdown()
		close(ct.drained)
		ct.wg.Wait()
	})
	return ct.err
}

// knows returns the names of the members m's memberlist holds in any
// state: dead ones too, until memberlist reaps them (forgets them,
// GossipToTheDeadTime after their death). memberlist has no API for that
// (Members leaves dead ones out), so this reads its node map, under its
// lock, by reflection: memberlist v0.7.0's nodeLock and nodeMap.
func knows(t *testing.T, m *Member) []string {
	t.Helper()
	v := reflect.ValueOf(m.ml).Elem()
	lock, nodes := v.FieldByName("nodeLock"), v.FieldByName("nodeMap")
	if !lock.IsValid() || lock.Type() != reflect.TypeFor[sync.RWMutex]() ||
		!nodes.IsValid() || nodes.Kind() != reflect.Map || nodes.Type().Key().Kind() != reflect.String {
		t.Fatal("memberlist.Memberlist has no nodeLock and nodeMap any more: update knows")
	}
	mu := (*sync.RWMutex)(lock.Addr().UnsafePointer())
	mu.RLock()
	defer mu.RUnlock()
	var out []string
	for _, k := range nodes.MapKeys() {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

// TestPartitionHealsAfterReap: members a and b are cut from c for longer
// than memberlist takes to declare the other side dead and then reap it;
// after the network heals, all three see each other again.
//
// This needs the rejoin loop. Once a member is reaped, memberlist never
// contacts it again: it probes, gossips to and syncs with members it
// knows only, and a and b no longer know c, nor c them. The partition
// would last for good but for the rejoin loop, which remembers every
// member ever seen and joins those not alive. (With RejoinInterval at an
// hour, the test times out waiting for the heal.)
func TestPartitionHealsAfterReap(t *testing.T) {
	keys := [][]byte{key(t)}
	p := &partition{group: map[string]int{}}
	tune := func(c *memberlist.Config) {
		// Declare the other side dead within about a second of the cut
		// (no confirmations needed, no longer timeout for lack of them),
		// and reap it a second later.
		c.ProbeInterval = 250 * time.Millisecond
		c.ProbeTimeout = 150 * time.Millisecond
		c.SuspicionMult = 2
		c.SuspicionMaxTimeoutMult = 1
		c.GossipToTheDeadTime = time.Second
	}
	member := func(name string, group int, join ...string) *Member {
		t.Helper()
		tr := newCutTransport(t, p, group)
		m, err := Start(Config{Name: name, Transport: tr, Join: join, Keys: keys, Label: "prod", Fast: true, Tune: tune,
			RejoinInterval: 200 * time.Millisecond, Logger: quiet})
		if err != nil {
			_ = tr.Shutdown()
			t.Fatal(err)
		}
		if m.Addr() != tr.self {
			t.Fatalf("member %s advertises %s, its transport is on %s", name, m.Addr(), tr.self)
		}
		return m
	}
	a := member("a", 0)
	defer a.Close()
	b := member("b", 0, a.Addr())
	defer b.Close()
	c := member("c", 1, a.Addr())
	defer c.Close()
	all := func() bool {
		for _, m := range []*Member{a, b, c} {
			if strings.Join(alive(m), ",") != "a,b,c" {
				return false
			}
		}
		return true
	}
	eventually(t, "three members", all)

	p.on.Store(true)
	eventually(t, "each side to reap the other", func() bool {
		return !slices.Contains(knows(t, a), "c") && !slices.Contains(knows(t, b), "c") &&
			slices.Equal(knows(t, c), []string{"c"})
	})
	if got := strings.Join(alive(c), ","); got != "c" {
		t.Fatalf("c sees %s alive across the partition", got)
	}

	p.on.Store(false)
	eventually(t, "the partition to heal", all)
}
