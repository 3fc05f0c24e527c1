// Package names validates and normalises the host names Outpost accepts from
// outside: accelerated domains (which may be one-label wildcards such as
// "*.example.com"), origin host names and origin SNI values. It also matches
// a concrete host against accelerated names, which the edge does for SNI and
// Host, and derives the CNAME a domain is given.
package names

import (
	"net/netip"
	"strings"

	"github.com/outpost-cdn/outpost/internal/apierr"
)

// MaxNameLength is the longest host name in presentation form (RFC 1035).
const MaxNameLength = 253

// Normalize lower-cases a name, trims surrounding space and one trailing dot.
// It does not validate.
func Normalize(name string) string {
	name = strings.TrimSpace(name)
	name = strings.TrimSuffix(name, ".")
	return strings.ToLower(name)
}

// Domain normalises and validates an accelerated domain name: an ASCII
// host name of at least two labels, or "*." followed by one of at least two
// labels. It returns the normalised name or an *apierr.Error with reason
// InvalidDomainName or DomainNameNotAscii.
func Domain(name string) (string, error) {
	n := Normalize(name)
	if err := checkASCII(name); err != nil {
		return "", err
	}
	rest, wildcard := strings.CutPrefix(n, "*.")
	if err := checkHost(rest, 2); err != nil {
		return "", apierr.InvalidArgument(apierr.ReasonInvalidDomainName,
			"%q is not a valid accelerated domain name: %s", name, err.Error()).With("name", name)
	}
	if wildcard && strings.Count(rest, ".") < 1 {
		return "", apierr.InvalidArgument(apierr.ReasonInvalidDomainName,
			"%q is not a valid accelerated domain name: a wildcard needs at least two labels after \"*.\"", name).With("name", name)
	}
	return n, nil
}

// Host normalises and validates a concrete host name (no wildcard, not an IP
// address), such as an origin domain or an origin SNI value. reason is the
// apierr reason used when it is invalid.
func Host(name, reason string) (string, error) {
	n := Normalize(name)
	if err := checkASCII(name); err != nil {
		return "", err
	}
	if err := checkHost(n, 1); err != nil {
		return "", apierr.InvalidArgument(reason, "%q is not a valid host name: %s", name, err.Error()).With("name", name)
	}
	return n, nil
}

// IsWildcard reports whether a normalised accelerated name is a wildcard.
func IsWildcard(name string) bool { return strings.HasPrefix(name, "*.") }

// Matches reports whether a concrete, normalised host is served by the
// accelerated name pattern: equal to it, or, for "*.example.com", exactly one
// label in front of "example.com".
func Matches(pattern, host string) bool {
	if pattern == host {
		return true
	}
	parent, ok := strings.CutPrefix(pattern, "*.")
	if !ok {
		return false
	}
	label, rest, found := strings.Cut(host, ".")
	return found && label != "" && rest == parent
}

// WildcardOf returns the one-label wildcard that would cover host
// ("a.example.com" → "*.example.com"), or "" when host has no parent of at
// least two labels.
func WildcardOf(host string) string {
	i := strings.IndexByte(host, '.')
	if i < 0 || !strings.Contains(host[i+1:], ".") {
		return ""
	}
	return "*" + host[i:]
}

// wildcardLabel stands for "*" in a CNAME: labels with "--" in positions 3-4
// are reserved (RFC 5891 R-LDH) and refused by checkHost, so no accepted
// domain can produce the same CNAME.
const wildcardLabel = "wc--all"

// CNAME returns the CNAME target for a normalised accelerated name:
// "<name>.<suffix>", with a leading "*" spelled as "wc--all".
func CNAME(name, suffix string) string {
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		name = wildcardLabel + "." + rest
	}
	return name + "." + Normalize(suffix)
}

func checkASCII(name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return apierr.InvalidArgument(apierr.ReasonDomainNameNotASCII,
				"%q contains non-ASCII characters: internationalised (IDN) names are not supported", name).With("name", name)
		}
	}
	return nil
}

type hostError string

func (e hostError) Error() string { return string(e) }

// checkHost validates an LDH host name with at least minLabels labels.
func checkHost(n string, minLabels int) error {
	switch {
	case n == "":
		return hostError("empty")
	case len(n) > MaxNameLength:
		return hostError("longer than 253 characters")
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return hostError("an IP address is not a host name")
	}
	labels := strings.Split(n, ".")
	if len(labels) < minLabels {
		return hostError("needs at least two labels (a name under a registered domain)")
	}
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return hostError("the last label cannot be all digits")
	}
	return nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return hostError("empty label")
	case l == "*":
		return hostError("a wildcard is allowed only as the whole first label")
	case len(l) > 63:
		return hostError("label longer than 63 characters")
	case l[0] == '-' || l[len(l)-1] == '-':
		return hostError("label starts or ends with a hyphen")
	case len(l) >= 4 && l[2:4] == "--":
		if strings.HasPrefix(l, "xn--") {
			return hostError("punycode (IDN) labels are not supported")
		}
		return hostError("labels with \"--\" in the third and fourth positions are reserved")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return hostError("label contains " + quoteByte(c) + "; only letters, digits and hyphens are allowed")
		}
	}
	return nil
}

func quoteByte(c byte) string {
	if c < 0x20 || c == 0x7f {
		return "a control character"
	}
	return "'" + string(rune(c)) + "'"
}
