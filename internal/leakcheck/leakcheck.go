// Package leakcheck runs goleak over a test binary with the one list of
// goroutines that outlive a test for reasons outside Outpost's control.
//
// Every entry says why it is not a leak. Anything else still running when
// the tests end fails the package.
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// known are goroutines that libraries start once per process, or that end
// on their own timer shortly after the owner shut down.
var known = []goleak.Option{
	// Process-wide background workers of the libraries, not per test.
	goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/logutil.(*MergeLogger).outputLoop"),
	goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	// memberlist's Shutdown does not wait for a probe in flight: the probe
	// goroutine waits for its ack timer (one probe interval) and returns.
	goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).sendPingAndWaitForAck"),
	// Pebble's validation authority (the dev cluster's and the tests' ACME
	// CA) reads its task queue for the life of the process: it cannot stop.
	goleak.IgnoreAnyFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
}

// VerifyTestMain runs the tests of m, then fails the binary if goroutines
// other than the known ones and those matched by extra are still running.
func VerifyTestMain(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, append(append([]goleak.Option(nil), known...), extra...)...)
}
