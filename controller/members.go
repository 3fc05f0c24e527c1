package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/clusterpki"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// pkiService serves PkiService: join tokens, the join of edge nodes and
// schedulers (members), renewal and revocation of their certificates.
type pkiService struct {
	outpostv1.UnimplementedPkiServiceServer
	c *Controller
}

var _ outpostv1.PkiServiceServer = (*pkiService)(nil)

// pkiAttempts bounds the retries of a PKI write that lost a race.
const pkiAttempts = 5

func apierrUnknownCert() error {
	return apierr.Unauthenticated(apierr.ReasonMemberCertificateRevoked, "the member certificate is not known to the cluster (revoked or pruned): join again with a new join token")
}

func apierrRevoked(name string) error {
	return apierr.Unauthenticated(apierr.ReasonMemberCertificateRevoked, "member %q was revoked: join again with a new join token", name)
}

func apierrExpired() error {
	return apierr.Unauthenticated(apierr.ReasonMemberCertificateExpired, "the member certificate expired: reconnect with the renewed one, or join again")
}

func (s *pkiService) GetCaCertificate(context.Context, *outpostv1.GetCaCertificateRequest) (*outpostv1.GetCaCertificateResponse, error) {
	ca := s.c.ca
	return &outpostv1.GetCaCertificateResponse{CaCertificatePem: ca.certPEM, CaPin: clusterpki.Pin(ca.cert)}, nil
}

func (s *pkiService) CreateJoinToken(ctx context.Context, req *outpostv1.CreateJoinTokenRequest) (*outpostv1.CreateJoinTokenResponse, error) {
	c := s.c
	ttl := defaultJoinTTL
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	if ttl < time.Second || ttl > maxJoinTTL {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "ttl %s is out of range: 1s to %s", ttl, maxJoinTTL)
	}
	role := req.GetRole()
	if role == outpostv1.MemberRole_MEMBER_ROLE_UNSPECIFIED {
		role = outpostv1.MemberRole_MEMBER_ROLE_NODE
	}
	if clusterpki.RoleOU(role) == "" {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidRole, "role %d is unknown: use node or scheduler", role)
	}
	if n := req.GetName(); n != "" && !nodeNamePattern.MatchString(n) {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "name %q is invalid: 1-63 letters, digits, '.', '_' or '-'", n)
	}
	if len(req.GetDescription()) > 256 {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "the description is longer than 256 bytes")
	}
	secret := newSecret()
	hash := hashSecret(secret)
	now := c.cfg.Now()
	rec := &storagev1.StoredJoinToken{
		Id: "join-" + hash[:16], Name: req.GetName(), Role: role, Description: req.GetDescription(),
		CreateTime: timestamppb.New(now), ExpireTime: timestamppb.New(now.Add(ttl)),
	}
	b, err := store.Encode(rec)
	if err != nil {
		return nil, err
	}
	// The lease deletes the token when it expires (rounded up to the
	// second); Join checks expire_time as well.
	lease, err := c.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second)+1)
	if err != nil {
		return nil, apierr.Unavailable(apierr.ReasonStoreUnavailable, "etcd: %v", err)
	}
	if _, err := c.cli.Put(ctx, store.JoinTokenKey(hash), string(b), clientv3.WithLease(lease.ID)); err != nil {
		return nil, apierr.Unavailable(apierr.ReasonStoreUnavailable, "etcd: %v", err)
	}
	c.log.Info("join token created", "token_id", rec.GetId(), "name", rec.GetName(), "member_role", clusterpki.RoleOU(role), "expires", now.Add(ttl).UTC().Format(time.RFC3339))
	return &outpostv1.CreateJoinTokenResponse{
		Token: clusterpki.FormatJoinToken(clusterpki.PinBytes(c.ca.cert), secret), TokenId: rec.GetId(),
		ExpireTime: rec.GetExpireTime(), CaPin: clusterpki.Pin(c.ca.cert),
	}, nil
}

// parseMemberCSR checks a member's CSR: an ECDSA P-256 key, a valid
// signature and a valid member name as its common name.
func parseMemberCSR(csrPEM string) (*x509.CertificateRequest, error) {
	csr, err := certs.ParseCSR(csrPEM)
	if err != nil {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidCsr, "the CSR is not valid: %v", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, apierr.InvalidArgument(apierr.ReasonUnsupportedKeyType, "the CSR's key must be ECDSA P-256")
	}
	if !nodeNamePattern.MatchString(csr.Subject.CommonName) {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidCsrSubject, "the CSR's common name %q is not a valid member name: 1-63 letters, digits, '.', '_' or '-'", csr.Subject.CommonName)
	}
	return csr, nil
}

func (s *pkiService) Join(ctx context.Context, req *outpostv1.JoinRequest) (*outpostv1.JoinResponse, error) {
	c := s.c
	invalid := apierr.Unauthenticated(apierr.ReasonInvalidJoinToken, "the join token is not valid: unknown, already used or expired")
	_, secret, err := clusterpki.ParseJoinToken(req.GetToken())
	if err != nil {
		return nil, invalid
	}
	csr, err := parseMemberCSR(req.GetCsrPem())
	if err != nil {
		return nil, err
	}
	name := csr.Subject.CommonName
	key := store.JoinTokenKey(hashSecret(secret))
	for range pkiAttempts {
		t := c.store.Begin()
		var tok storagev1.StoredJoinToken
		found, err := t.Get(ctx, key, &tok)
		if err != nil {
			return nil, err
		}
		if !found || !c.cfg.Now().Before(tok.GetExpireTime().AsTime()) {
			return nil, invalid
		}
		if tok.GetName() != "" && tok.GetName() != name {
			return nil, apierr.PermissionDenied(apierr.ReasonMemberNameMismatch, "the join token is for member %q, not %q", tok.GetName(), name)
		}
		cert, certPEM, err := c.issueMember(name, tok.GetRole(), csr)
		if err != nil {
			return nil, err
		}
		serial := clusterpki.SerialHex(cert)
		if _, err := t.Guard(ctx, store.MemberCertKey(serial)); err != nil {
			return nil, err
		}
		// The token is consumed in the transaction that records the
		// certificate: of two joins with one token, one commits.
		t.Delete(key)
		t.Put(store.MemberCertKey(serial), memberRecord(cert, tok.GetRole(), tok.GetId()))
		if _, err := t.Commit(ctx); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		c.log.Info("member joined", "name", name, "member_role", clusterpki.RoleOU(tok.GetRole()), "token_id", tok.GetId(), "serial", serial)
		return &outpostv1.JoinResponse{CertificatePem: certPEM, CaCertificatePem: c.ca.certPEM, Role: tok.GetRole()}, nil
	}
	return nil, store.ErrConflict
}

func (c *Controller) issueMember(name string, role outpostv1.MemberRole, csr *x509.CertificateRequest) (*x509.Certificate, string, error) {
	cert, certPEM, err := c.ca.sign(memberTemplate(name, role, time.Now(), c.cfg.MemberCertTTL), csr.PublicKey)
	if err != nil {
		return nil, "", apierr.New(codes.Internal, apierr.ReasonInternal, "sign the member certificate: %v", err)
	}
	return cert, certPEM, nil
}

func memberRecord(cert *x509.Certificate, role outpostv1.MemberRole, issuedFor string) *outpostv1.MemberCertificate {
	return &outpostv1.MemberCertificate{
		Serial: clusterpki.SerialHex(cert), Name: cert.Subject.CommonName, Role: role,
		NotBefore: timestamppb.New(cert.NotBefore), NotAfter: timestamppb.New(cert.NotAfter), IssuedFor: issuedFor,
	}
}

func (s *pkiService) RenewMemberCertificate(ctx context.Context, req *outpostv1.RenewMemberCertificateRequest) (*outpostv1.RenewMemberCertificateResponse, error) {
	c, p := s.c, principalFrom(ctx)
	csr, err := parseMemberCSR(req.GetCsrPem())
	if err != nil {
		return nil, err
	}
	if csr.Subject.CommonName != p.Member {
		return nil, apierr.PermissionDenied(apierr.ReasonMemberNameMismatch, "the CSR is for %q but the caller is %q", csr.Subject.CommonName, p.Member)
	}
	for range pkiAttempts {
		t := c.store.Begin()
		var old outpostv1.MemberCertificate
		found, err := t.Get(ctx, store.MemberCertKey(p.MemberSerial), &old)
		if err != nil {
			return nil, err
		}
		if !found || old.GetRevokeTime() != nil {
			return nil, apierrRevoked(p.Member)
		}
		cert, certPEM, err := c.issueMember(p.Member, p.MemberRole, csr)
		if err != nil {
			return nil, err
		}
		serial := clusterpki.SerialHex(cert)
		if _, err := t.Guard(ctx, store.MemberCertKey(serial)); err != nil {
			return nil, err
		}
		t.Put(store.MemberCertKey(serial), memberRecord(cert, p.MemberRole, "renew:"+p.MemberSerial))
		if _, err := t.Commit(ctx); errors.Is(err, store.ErrConflict) {
			continue // revoked meanwhile? read again
		} else if err != nil {
			return nil, err
		}
		c.log.Info("member certificate renewed", "name", p.Member, "old_serial", p.MemberSerial, "serial", serial)
		return &outpostv1.RenewMemberCertificateResponse{CertificatePem: certPEM, CaCertificatePem: c.ca.certPEM}, nil
	}
	return nil, store.ErrConflict
}

func (s *pkiService) ListMemberCertificates(ctx context.Context, req *outpostv1.ListMemberCertificatesRequest) (*outpostv1.ListMemberCertificatesResponse, error) {
	recs, err := s.c.memberCerts(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	out := make([]*outpostv1.MemberCertificate, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.rec)
	}
	return &outpostv1.ListMemberCertificatesResponse{Certificates: out}, nil
}

type memberCertKV struct {
	key string
	rev int64
	rec *outpostv1.MemberCertificate
}

// memberCerts returns the member certificate records (of name, or all),
// oldest first.
func (c *Controller) memberCerts(ctx context.Context, name string) ([]memberCertKV, error) {
	kvs, _, err := c.store.Range(ctx, store.MemberCertsPrefix(), "", 0)
	if err != nil {
		return nil, err
	}
	var out []memberCertKV
	for _, kv := range kvs {
		rec := &outpostv1.MemberCertificate{}
		if err := store.Decode(kv, rec); err != nil {
			return nil, err
		}
		if name == "" || rec.GetName() == name {
			out = append(out, memberCertKV{key: kv.Key, rev: kv.ModRevision, rec: rec})
		}
	}
	sortByNotBefore(out)
	return out, nil
}

func (s *pkiService) RevokeMember(ctx context.Context, req *outpostv1.RevokeMemberRequest) (*outpostv1.RevokeMemberResponse, error) {
	c := s.c
	name := req.GetName()
	if !nodeNamePattern.MatchString(name) {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "name %q is invalid", name)
	}
	for range pkiAttempts {
		recs, err := c.memberCerts(ctx, name)
		if err != nil {
			return nil, err
		}
		t := c.store.Begin()
		n := 0
		for _, r := range recs {
			if r.rec.GetRevokeTime() != nil {
				continue
			}
			t.Expect(r.key, r.rev)
			r.rec.RevokeTime = c.timestamp()
			t.Put(r.key, r.rec)
			n++
		}
		if n == 0 {
			if len(recs) == 0 {
				return nil, apierr.NotFound(apierr.ReasonNodeNotFound, "no certificate was issued to %q", name)
			}
			return &outpostv1.RevokeMemberResponse{}, nil
		}
		// Also fail if a certificate was issued to the name meanwhile.
		if _, err := t.Count(ctx, store.MemberCertsPrefix()); err != nil {
			return nil, err
		}
		if _, err := t.Commit(ctx); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		c.log.Info("member revoked", "name", name, "certificates", n)
		return &outpostv1.RevokeMemberResponse{Revoked: uint32(n)}, nil
	}
	return nil, store.ErrConflict
}

// memberPrincipal authenticates a caller by its member certificate: the
// TLS handshake verified it against the cluster CA; here it must be a
// member certificate (a role in it), recorded, not revoked, not expired.
func (a *authenticator) memberPrincipal(ctx context.Context) (*Principal, error) {
	pr, ok := peer.FromContext(ctx)
	var chains [][]*x509.Certificate
	if ok {
		if info, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			chains = info.State.VerifiedChains
		}
	}
	if len(chains) == 0 || len(chains[0]) == 0 {
		return nil, apierr.Unauthenticated(apierr.ReasonMemberCertificateRequired, "this method needs a member certificate (mutual TLS): join the cluster with a join token")
	}
	leaf := chains[0][0]
	role := clusterpki.CertRole(leaf)
	if role == outpostv1.MemberRole_MEMBER_ROLE_UNSPECIFIED {
		return nil, apierr.PermissionDenied(apierr.ReasonWrongRole, "the client certificate is not a member certificate")
	}
	serial := clusterpki.SerialHex(leaf)
	if err := a.c.checkMemberCert(ctx, serial, leaf.Subject.CommonName, leaf.NotAfter); err != nil {
		return nil, err
	}
	return &Principal{
		TokenID: "cert:" + serial, Role: outpostv1.Role_ROLE_NODE,
		Member: leaf.Subject.CommonName, MemberRole: role, MemberSerial: serial, MemberNotAfter: leaf.NotAfter,
	}, nil
}

// stillValid checks again, for a long-lived stream, that its caller's
// credentials hold: the token exists, or the member certificate is neither
// revoked nor expired. It returns nil when the store cannot be read.
func (c *Controller) stillValid(ctx context.Context, p *Principal) error {
	if p.MemberSerial != "" {
		err := c.checkMemberCert(ctx, p.MemberSerial, p.Member, p.MemberNotAfter)
		if apierr.Reason(err) == apierr.ReasonStoreUnavailable || (err != nil && apierr.Reason(err) == "") {
			return nil
		}
		return err
	}
	if _, found, err := c.store.GetRaw(ctx, store.TokenIDKey(p.TokenID)); err == nil && !found {
		return apierr.Unauthenticated(apierr.ReasonInvalidToken, "the token was revoked")
	}
	return nil
}

func sortByNotBefore(recs []memberCertKV) {
	slices.SortStableFunc(recs, func(a, b memberCertKV) int {
		return a.rec.GetNotBefore().AsTime().Compare(b.rec.GetNotBefore().AsTime())
	})
}
