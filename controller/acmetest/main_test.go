package acmetest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/outpost-cdn/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m,
		// Idle keep-alive connections of http.Clients the tests made.
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}
