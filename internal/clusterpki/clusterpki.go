// Package clusterpki holds what the controllers and the members of an
// Outpost cluster (edge nodes and schedulers) share about the cluster CA:
// the CA pin, the join-token format and how a member certificate carries
// its role; and the member side of the PKI (Identity): joining with a
// one-time token, keeping the key and certificate on disk, renewing before
// expiry and the TLS credentials for the connections to the controllers.
package clusterpki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// JoinTokenPrefix starts every join token. A token is
// "OPJ1-<64 hex digits: the CA pin>-<secret>", so that a member trusts the
// controllers on first contact with nothing but the token (as Docker
// Swarm's join tokens carry the CA digest).
const JoinTokenPrefix = "OPJ1-"

// Organizational units of member certificates: the role a certificate
// grants is its subject's OU.
const (
	OUNode      = "outpost-node"
	OUScheduler = "outpost-scheduler"
)

// PinPrefix starts a CA pin in its text form.
const PinPrefix = "sha256:"

// Pin returns the pin of a CA certificate: "sha256:" and the hex SHA-256
// of its SubjectPublicKeyInfo (as kubeadm's --discovery-token-ca-cert-hash).
func Pin(cert *x509.Certificate) string { return PinPrefix + hex.EncodeToString(PinBytes(cert)) }

// PinBytes is the raw SHA-256 of cert's SubjectPublicKeyInfo.
func PinBytes(cert *x509.Certificate) []byte {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return sum[:]
}

// ParsePin parses a pin given as "sha256:<hex>" or as the hex alone.
func ParsePin(s string) ([]byte, error) {
	h := strings.TrimPrefix(strings.TrimSpace(s), PinPrefix)
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("bad CA pin: want sha256:<64 hex digits>")
	}
	return b, nil
}

// FormatJoinToken returns the token that carries pin and secret.
func FormatJoinToken(pin []byte, secret string) string {
	return JoinTokenPrefix + hex.EncodeToString(pin) + "-" + secret
}

// ParseJoinToken splits a join token into the CA pin and the secret. The
// secret is what the controllers check; the pin is public.
func ParseJoinToken(tok string) (pin []byte, secret string, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(tok), JoinTokenPrefix)
	if !ok {
		return nil, "", fmt.Errorf("not a join token: want %s<pin>-<secret>", JoinTokenPrefix)
	}
	p, secret, ok := strings.Cut(rest, "-")
	if !ok || secret == "" {
		return nil, "", fmt.Errorf("malformed join token: want %s<pin>-<secret>", JoinTokenPrefix)
	}
	if pin, err = ParsePin(p); err != nil {
		return nil, "", fmt.Errorf("malformed join token: %w", err)
	}
	return pin, secret, nil
}

// RoleOU returns the organizational unit of a role's certificates ("" for
// an unknown role).
func RoleOU(r outpostv1.MemberRole) string {
	switch r {
	case outpostv1.MemberRole_MEMBER_ROLE_NODE:
		return OUNode
	case outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER:
		return OUScheduler
	}
	return ""
}

// CertRole returns the role a member certificate grants, or
// MEMBER_ROLE_UNSPECIFIED if it names none or several.
func CertRole(cert *x509.Certificate) outpostv1.MemberRole {
	if len(cert.Subject.OrganizationalUnit) != 1 {
		return outpostv1.MemberRole_MEMBER_ROLE_UNSPECIFIED
	}
	switch cert.Subject.OrganizationalUnit[0] {
	case OUNode:
		return outpostv1.MemberRole_MEMBER_ROLE_NODE
	case OUScheduler:
		return outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER
	}
	return outpostv1.MemberRole_MEMBER_ROLE_UNSPECIFIED
}

// SerialHex is how serial numbers are written in etcd keys and the API.
func SerialHex(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }
