package acmetest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/outpost-cdn/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m,
		// Pebble's validation authority reads its task queue for the life
		// of the process: it has no way to stop.
		goleak.IgnoreAnyFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		// Idle keep-alive connections of http.Clients the tests made.
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}
