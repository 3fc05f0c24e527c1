package controller_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/apierr"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// scrape reads the controller's /metrics.
func scrape(t *testing.T, env *controllertest.Env) string {
	t.Helper()
	resp, err := http.Get("http://" + env.Controller.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// TestControllerMetrics: /metrics counts API calls by method and code
// (refused ones too), the config streams open by role, the nodes' ACKs,
// and the config revision.
func TestControllerMetrics(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) { c.MetricsAddr = "127.0.0.1:0" })
	admin, readOnly := env.NewAccount(t, "acme")
	ctx := ctxT(t)
	if _, err := env.Clients(t, admin).Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	_, err := env.Clients(t, readOnly).Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "x.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonReadOnlyToken)
	node := connectNode(t, env, "edge-1", "east", 0)
	snap := node.next()
	node.send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Ack{Ack: &outpostv1.Ack{Revision: snap.GetRevision()}}})

	want := []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="CreateDomain",grpc_service="outpost.v1.DomainService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="PermissionDenied",grpc_method="CreateDomain",grpc_service="outpost.v1.DomainService",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_count{grpc_method="CreateDomain",grpc_service="outpost.v1.DomainService",grpc_type="unary"} 2`,
		`outpost_controller_config_streams{role="node"} 1`,
		`outpost_controller_config_streams{role="scheduler"} 0`,
		`outpost_controller_config_replies_total{reply="ack"} 1`,
		`outpost_controller_config_replies_total{reply="nack"} 0`,
		`outpost_controller_config_revision `,
		`go_goroutines `,
	}
	var text string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		text = scrape(t, env)
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q:\n%s", missing, text)
		}
	}
	// No secret in the metrics: tokens and keys never appear.
	for _, secret := range []string{admin, readOnly, "PRIVATE KEY"} {
		if strings.Contains(text, secret) {
			t.Fatalf("/metrics holds a secret (%.12s…)", secret)
		}
	}
}
