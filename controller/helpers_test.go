package controller_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outpost-cdn/outpost/internal/apierr"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantErr checks an RPC error's code and ErrorInfo reason.
func wantErr(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s (%s), got success", code, reason)
	}
	if got := status.Code(err); got != code {
		t.Fatalf("want code %s, got %s: %v", code, got, err)
	}
	if got := apierr.Reason(err); got != reason {
		t.Fatalf("want reason %q, got %q: %v", reason, got, err)
	}
}

func ipOrigin(addr string) *outpostv1.Origin {
	return &outpostv1.Origin{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: addr}
}

func domainOrigin(host string) *outpostv1.Origin {
	return &outpostv1.Origin{Type: outpostv1.OriginType_ORIGIN_TYPE_DOMAIN, Address: host}
}
