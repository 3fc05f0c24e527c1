package controller_test

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/apierr"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestListAccountsAndNodesArePaged: ListAccounts and ListNodes return
// pages in key order whose tokens lead through every item once; a token
// that is not one of theirs is refused.
func TestListAccountsAndNodesArePaged(t *testing.T) {
	env := controllertest.Start(t)
	op := env.Clients(t, env.OperatorToken)
	ctx := ctxT(t)
	for _, id := range []string{"acct-c", "acct-a", "acct-b"} {
		env.NewAccount(t, id)
	}
	for i := range 3 {
		node := connectNode(t, env, fmt.Sprintf("edge-%d", 3-i), "east", 0)
		node.until("a snapshot", func(m *outpostv1.StreamConfigResponse) bool { return m.GetSnapshot() })
	}

	var accounts []string
	pages := 0
	for token := ""; ; pages++ {
		resp, err := op.Accounts.ListAccounts(ctx, &outpostv1.ListAccountsRequest{PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetAccounts() {
			accounts = append(accounts, a.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	unique := slices.Compact(slices.Clone(accounts)) // sorted: repeats are adjacent
	if !slices.IsSorted(accounts) || len(unique) != len(accounts) || pages < 2 ||
		!slices.Contains(accounts, "acct-a") || !slices.Contains(accounts, "acct-b") || !slices.Contains(accounts, "acct-c") {
		t.Fatalf("accounts over %d pages: %v", pages+1, accounts)
	}

	var nodes []string
	var revision int64
	for token := ""; ; {
		resp, err := op.Nodes.ListNodes(ctx, &outpostv1.ListNodesRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetNodes()) > 2 {
			t.Fatalf("a page of %d nodes, asked for 2", len(resp.GetNodes()))
		}
		for _, n := range resp.GetNodes() {
			nodes = append(nodes, n.GetName())
		}
		revision = resp.GetCurrentRevision()
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if !slices.Equal(nodes, []string{"edge-1", "edge-2", "edge-3"}) || revision == 0 {
		t.Fatalf("nodes %v at revision %d; want edge-1..3 in name order", nodes, revision)
	}
	all, err := op.Nodes.ListNodes(ctx, &outpostv1.ListNodesRequest{})
	if err != nil || len(all.GetNodes()) != 3 || all.GetNextPageToken() != "" {
		t.Fatalf("one default page: %v, %v", all, err)
	}

	_, err = op.Nodes.ListNodes(ctx, &outpostv1.ListNodesRequest{PageToken: "not-a-token"})
	wantErr(t, err, codes.InvalidArgument, apierr.ReasonInvalidPageToken)
	_, err = op.Accounts.ListAccounts(ctx, &outpostv1.ListAccountsRequest{PageToken: "x"})
	wantErr(t, err, codes.InvalidArgument, apierr.ReasonInvalidPageToken)
}
