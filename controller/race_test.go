package controller_test

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/apierr"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestTwoControllersRace runs two controllers on one etcd and races admins
// through both: a lost race is Aborted, never a silent overwrite.
func TestTwoControllersRace(t *testing.T) {
	a := controllertest.Start(t, func(c *controller.Config) { c.DefaultDomainQuota = 5 })
	b := a.StartPeer(t)
	admin, _ := a.NewAccount(t, "acme")
	ca, cb := a.Clients(t, admin), b.Clients(t, admin)
	clients := []*controllertest.Clients{ca, cb}
	ctx := ctxT(t)

	t.Run("same name", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = clients[i%2].Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "race.example.com", Origins: []*outpostv1.Origin{ipOrigin(fmt.Sprintf("192.0.2.%d", i+1))}})
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case status.Code(err) == codes.AlreadyExists && apierr.Reason(err) == "DomainAlreadyExist",
				status.Code(err) == codes.Aborted && apierr.Reason(err) == "ConcurrentModification":
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d creates of one name succeeded, want exactly 1", ok)
		}
	})

	t.Run("updates", func(t *testing.T) {
		type result struct {
			value string
			rev   int64
		}
		var (
			mu   sync.Mutex
			wins []result
			wg   sync.WaitGroup
		)
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := fmt.Sprintf("origin-%d.example.net", i)
				_, err := clients[i%2].Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: "race.example.com", Enabled: true, Value: v})
				if err != nil {
					if status.Code(err) != codes.Aborted || apierr.Reason(err) != "ConcurrentModification" {
						t.Errorf("unexpected error %v", err)
					}
					return
				}
				// The revision of this write, read back on the other controller.
				d, err := clients[(i+1)%2].Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: "race.example.com"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				wins = append(wins, result{v, d.GetDomain().GetRevision()})
				mu.Unlock()
			}()
		}
		wg.Wait()
		if len(wins) == 0 {
			t.Fatal("no update succeeded")
		}
		final, err := ca.Origins.GetOriginSettings(ctx, &outpostv1.GetOriginSettingsRequest{Domain: "race.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, w := range wins {
			if w.value == final.GetSettings().GetSni().GetValue() {
				found = true
			}
		}
		if !found {
			t.Fatalf("final value %q is none of the acknowledged writes %v", final.GetSettings().GetSni().GetValue(), wins)
		}
	})

	t.Run("quota", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 12)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = clients[i%2].Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: fmt.Sprintf("q%d.example.com", i), Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}})
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if c := status.Code(err); c != codes.ResourceExhausted && c != codes.Aborted {
				t.Fatalf("unexpected error %v", err)
			}
		}
		acct, err := cb.Accounts.GetAccount(ctx, &outpostv1.GetAccountRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// race.example.com plus the winners, never above the quota of 5.
		if got := int(acct.GetAccount().GetDomainCount()); got != ok+1 || got > 5 {
			t.Fatalf("account has %d domains after %d successful creates; quota 5", got, ok)
		}
	})

	t.Run("consistent answers", func(t *testing.T) {
		la, err := ca.Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		lb, err := cb.Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(la, lb) {
			t.Fatalf("controllers disagree:\n%v\n%v", la, lb)
		}
	})
}
