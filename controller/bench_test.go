package controller_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// BenchmarkCreateDomain adds domains to an account that already holds
// existing ones, one call at a time: the cost of a call must not grow
// with the account's domains. Reproduce:
//
//	go test -run '^$' -bench BenchmarkCreateDomain -benchtime 200x ./controller
func BenchmarkCreateDomain(b *testing.B) {
	for _, existing := range []int{0, 2000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			env := controllertest.Start(b, func(c *controller.Config) { c.DefaultDomainQuota = 1 << 20 })
			admin, _ := env.NewAccount(b, "bench")
			cl := env.Clients(b, admin)
			ctx := context.Background()
			create := func(name string) {
				if _, err := cl.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: name,
					Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1"}}}); err != nil {
					b.Fatal(err)
				}
			}
			for i := range existing {
				create(fmt.Sprintf("e%d.example.com", i))
			}
			b.ResetTimer()
			for i := range b.N {
				create(fmt.Sprintf("n%d.example.com", i))
			}
		})
	}
}
