package controller

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	TokenID string
	Account string // empty for operator tokens and members
	Role    outpostv1.Role
	// A member (edge node or scheduler) authenticated by its certificate:
	// its name (the certificate's CN), role, serial (hex) and expiry.
	// Members have Role ROLE_NODE and TokenID "cert:<serial>".
	Member         string
	MemberRole     outpostv1.MemberRole
	MemberSerial   string
	MemberNotAfter time.Time
}

// IsOperator reports whether the caller manages the whole cluster.
func (p *Principal) IsOperator() bool { return p.Role == outpostv1.Role_ROLE_OPERATOR }

type principalKey struct{}

// principalFrom returns the caller the auth interceptor attached to ctx.
func principalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// access is what a method requires of its caller.
type access int

const (
	// accessDenied is the zero value: a method without a policy is refused.
	accessDenied access = iota
	// accessAny: any valid token (WhoAmI).
	accessAny
	// accessRead: an account's admin or read-only token.
	accessRead
	// accessWrite: an account's admin token.
	accessWrite
	// accessView: any account token or an operator (cluster-wide reads).
	accessView
	// accessManage: an operator or an account admin; the handler narrows it.
	accessManage
	// accessOperator: an operator token.
	accessOperator
	// accessNode: an edge node or scheduler, authenticated by its member
	// certificate (mutual TLS), not by a bearer token.
	accessNode
	// accessPublic: no credentials (the CA certificate; Join, which its
	// request's join token authenticates).
	accessPublic
)

// publicServices need no credentials: health checks and reflection (the
// schema of an open-source API is public).
var publicServices = []string{"/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"}

// authenticator checks bearer tokens against the store and enforces the
// per-method policy. Tokens are looked up by the SHA-256 of the secret, so
// the store never holds a usable secret.
type authenticator struct {
	c      *Controller
	store  *store.Store
	policy map[string]access
}

func (a *authenticator) authorize(ctx context.Context, method string) (context.Context, error) {
	for _, p := range publicServices {
		if strings.HasPrefix(method, p) {
			return ctx, nil
		}
	}
	need := a.policy[method]
	switch need {
	case accessDenied:
		return nil, apierr.PermissionDenied(apierr.ReasonWrongRole, "method %s is not available", method)
	case accessPublic:
		return ctx, nil
	case accessNode:
		// Members authenticate with their certificate alone; a bearer
		// token (even a legacy ROLE_NODE one) does not open these methods.
		p, err := a.memberPrincipal(ctx)
		if err != nil {
			return nil, err
		}
		if call, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
			call.principal = p
		}
		return context.WithValue(ctx, principalKey{}, p), nil
	}
	secret, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	var st storagev1.StoredToken
	_, found, err := a.store.Get(ctx, store.TokenKey(hashSecret(secret)), &st)
	if err != nil {
		return nil, err
	}
	if !found || st.GetToken() == nil {
		return nil, apierr.Unauthenticated(apierr.ReasonInvalidToken, "the bearer token is not valid")
	}
	tok := st.GetToken()
	p := &Principal{TokenID: tok.GetId(), Account: tok.GetAccount(), Role: tok.GetRole()}
	if call, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		call.principal = p
	}
	if err := permit(p, need); err != nil {
		return nil, err
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

func permit(p *Principal, need access) error {
	role := p.Role
	accountRole := (role == outpostv1.Role_ROLE_ADMIN || role == outpostv1.Role_ROLE_READ_ONLY) && p.Account != ""
	switch need {
	case accessAny:
		return nil
	case accessRead:
		if accountRole {
			return nil
		}
		return apierr.PermissionDenied(apierr.ReasonAccountRequired, "this method acts on an account's resources and needs an account token")
	case accessWrite:
		if role == outpostv1.Role_ROLE_ADMIN && p.Account != "" {
			return nil
		}
		if role == outpostv1.Role_ROLE_READ_ONLY {
			return apierr.PermissionDenied(apierr.ReasonReadOnlyToken, "a read-only token cannot make changes")
		}
		return apierr.PermissionDenied(apierr.ReasonAccountRequired, "this method changes an account's resources and needs an account admin token")
	case accessView:
		if accountRole || role == outpostv1.Role_ROLE_OPERATOR {
			return nil
		}
	case accessManage:
		if role == outpostv1.Role_ROLE_OPERATOR || role == outpostv1.Role_ROLE_ADMIN && p.Account != "" {
			return nil
		}
		if role == outpostv1.Role_ROLE_READ_ONLY {
			return apierr.PermissionDenied(apierr.ReasonReadOnlyToken, "a read-only token cannot make changes")
		}
	case accessOperator:
		if role == outpostv1.Role_ROLE_OPERATOR {
			return nil
		}
		return apierr.PermissionDenied(apierr.ReasonOperatorOnly, "this method needs an operator token")
	}
	return apierr.PermissionDenied(apierr.ReasonWrongRole, "the token's role (%s) may not call this method", shortRole(role))
}

func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", apierr.Unauthenticated(apierr.ReasonMissingCredentials, "missing credentials: send \"authorization: Bearer <token>\"")
	}
	scheme, secret, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(secret) == "" {
		return "", apierr.Unauthenticated(apierr.ReasonMissingCredentials, "malformed authorization header: want \"Bearer <token>\"")
	}
	return strings.TrimSpace(secret), nil
}

func (a *authenticator) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func (a *authenticator) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// hashSecret is the store key of a token secret.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// newSecret returns a fresh token secret: "opt_" and 32 random bytes.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "opt_" + base64.RawURLEncoding.EncodeToString(b)
}

// newID returns prefix + "-" + 16 random hex digits.
func newID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func shortRole(r outpostv1.Role) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(r.String(), "ROLE_"), "_", "-"))
}
