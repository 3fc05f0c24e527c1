package controller_test

import (
	"testing"

	"github.com/outpost-cdn/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
