package outpostctl

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler"
)

func TestResolveAgainstARealScheduler(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := env.Clients(t, admin).Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com",
		Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1"}}}); err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.Start(ctx, scheduler.Config{GRPCAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0", Controllers: []string{env.Addr},
		JoinToken: env.SchedulerJoinToken(t), DefaultLatitude: 48.85, DefaultLongitude: 2.35,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vars := map[string]string{envScheduler: s.GRPCAddr()}
	var r result
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r = runCLI(t, vars, "resolve", "www.example.com", "--client-ip", "203.0.113.7"); r.code == 0 || time.Now().After(deadline) {
			break
		}
	}
	wantOK(t, r)
	if !strings.Contains(r.stdout, "Client placed at 48.8500, 2.3500") || !strings.Contains(r.stdout, "No edge node can serve it now.") {
		t.Fatalf("resolve table: %q", r.stdout)
	}
	r = runCLI(t, vars, "resolve", "www.example.com.cdn.outpost.test", "-o", "json")
	wantOK(t, r)
	var resp outpostv1.ResolveResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.GetTtlSeconds() != 30 {
		t.Fatalf("resolve json: %v %v", &resp, err)
	}
	wantFail(t, runCLI(t, vars, "resolve", "nope.example.com"), 1, "Error: NotFound (DomainNotFound)")
	wantFail(t, runCLI(t, vars, "resolve", "www.example.com", "--client-ip", "not-an-ip"), 1, "Error: InvalidArgument")
	wantFail(t, runCLI(t, map[string]string{envScheduler: closedAddr(t)}, "resolve", "www.example.com"), 1, "Error: Unavailable")
}
