package outpostctl

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// originSpecSyntax is the --origin syntax, for help texts and error messages.
const originSpecSyntax = "TYPE:ADDRESS[:PORT][,backup|,primary][,weight=N]"

// originTypes maps the TYPE of an origin spec to the API's origin type.
var originTypes = map[string]outpostv1.OriginType{
	"ip":     outpostv1.OriginType_ORIGIN_TYPE_IP,
	"domain": outpostv1.OriginType_ORIGIN_TYPE_DOMAIN,
	"oss":    outpostv1.OriginType_ORIGIN_TYPE_OSS,
	"fc":     outpostv1.OriginType_ORIGIN_TYPE_FC,
}

// ParseOrigin parses an origin spec, TYPE:ADDRESS[:PORT][,backup|,primary][,weight=N]:
//
//	ip:203.0.113.10
//	ip:[2001:db8::1]:443
//	domain:origin.example.com:443,weight=20
//	oss:bucket.oss.example.com:443,backup
//
// TYPE is ip, domain, oss or fc. An ip origin takes an IPv4 or IPv6 address
// (IPv6 in brackets); the others take a host name, which is normalised to
// lower case. PORT is 1-65535 (the controller accepts 80 and 443) and is left
// 0, meaning 80, when absent. The priority is primary unless the spec says
// backup; the weight (1-100) is left 0, meaning the controller's default,
// when absent. Each mistake gets its own error message.
func ParseOrigin(spec string) (*outpostv1.Origin, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty origin: want %s", originSpecSyntax)
	}
	parts := strings.Split(spec, ",")
	o := &outpostv1.Origin{Priority: outpostv1.OriginPriority_ORIGIN_PRIORITY_PRIMARY}
	if err := parseOriginAddress(strings.TrimSpace(parts[0]), o); err != nil {
		return nil, err
	}
	var sawPriority, sawWeight bool
	for _, opt := range parts[1:] {
		opt = strings.TrimSpace(opt)
		key, value, hasValue := strings.Cut(opt, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		switch {
		case opt == "":
			return nil, errors.New("empty option after ','")
		case (key == "backup" || key == "primary") && !hasValue:
			if sawPriority {
				return nil, errors.New("priority given twice: use one of backup or primary")
			}
			sawPriority = true
			if key == "backup" {
				o.Priority = outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP
			}
		case key == "weight":
			if sawWeight {
				return nil, errors.New("weight given twice")
			}
			sawWeight = true
			value = strings.TrimSpace(value)
			w, err := strconv.ParseUint(value, 10, 32)
			if !hasValue || err != nil || w < 1 || w > 100 {
				return nil, fmt.Errorf("invalid weight %q: want weight=N with N a whole number from 1 to 100", value)
			}
			o.Weight = uint32(w)
		default:
			return nil, fmt.Errorf("unknown option %q: want backup, primary or weight=N", opt)
		}
	}
	return o, nil
}

// parseOriginAddress parses TYPE:ADDRESS[:PORT] into o.
func parseOriginAddress(s string, o *outpostv1.Origin) error {
	typ, rest, hasColon := strings.Cut(s, ":")
	typ = strings.ToLower(typ)
	t, known := originTypes[typ]
	switch {
	case known:
	case typ == "http" || typ == "https":
		return fmt.Errorf("an origin is not a URL: want %s, e.g. domain:origin.example.com:443", originSpecSyntax)
	case !hasColon || strings.ContainsAny(typ, ".[") || isIP(s):
		hint := ""
		if isIP(s) || strings.HasPrefix(s, "[") {
			hint = ", e.g. ip:" + s
		} else if s != "" {
			hint = ", e.g. domain:" + s
		}
		return fmt.Errorf("missing origin type: want %s with TYPE ip, domain, oss or fc%s", originSpecSyntax, hint)
	default:
		return fmt.Errorf("unknown origin type %q: want ip, domain, oss or fc", typ)
	}
	o.Type = t

	hp, err := splitHostPort(rest)
	if err != nil {
		return err
	}
	host, bracketed := hp.host, hp.bracketed
	if hp.hasPort {
		p, err := strconv.ParseUint(hp.port, 10, 16)
		if err != nil || p == 0 {
			return fmt.Errorf("invalid port %q: want a number from 1 to 65535 (usually 80 or 443)", hp.port)
		}
		o.Port = uint32(p)
	}
	if host == "" {
		return fmt.Errorf("missing address after %q", typ+":")
	}

	if t == outpostv1.OriginType_ORIGIN_TYPE_IP {
		addr, err := netip.ParseAddr(host)
		switch {
		case err != nil:
			return fmt.Errorf("%q is not an IP address: use domain:%s for a host name", host, host)
		case addr.Zone() != "":
			return fmt.Errorf("IPv6 zone %q is not allowed in an origin address", addr.Zone())
		case addr.Is4() && bracketed:
			return fmt.Errorf("brackets are only for IPv6 addresses: write ip:%s", host)
		}
		o.Address = addr.String()
		return nil
	}

	if bracketed {
		return errors.New("brackets are only for IPv6 addresses of ip origins")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return fmt.Errorf("%q is an IP address: use ip:%s", host, host)
	}
	n, err := names.Host(host, apierr.ReasonInvalidOrigin)
	if err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) {
			return errors.New(ae.Message)
		}
		return err
	}
	o.Address = n
	return nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// hostPort is ADDRESS[:PORT] taken apart.
type hostPort struct {
	host      string
	port      string
	hasPort   bool // a ':' announced a port, which may still be empty
	bracketed bool // the host was in brackets, as an IPv6 address must be
}

// splitHostPort splits ADDRESS[:PORT], where an IPv6 ADDRESS is in brackets.
// Unlike net.SplitHostPort, the port is optional.
func splitHostPort(s string) (hostPort, error) {
	if rest, ok := strings.CutPrefix(s, "["); ok {
		host, after, ok := strings.Cut(rest, "]")
		if !ok {
			return hostPort{}, errors.New("missing ']' after the IPv6 address")
		}
		port, hasPort := strings.CutPrefix(after, ":")
		if !hasPort && after != "" {
			return hostPort{}, fmt.Errorf("unexpected %q after ']': want :PORT", after)
		}
		return hostPort{host: host, port: port, hasPort: hasPort, bracketed: true}, nil
	}
	if strings.Count(s, ":") <= 1 {
		host, port, hasPort := strings.Cut(s, ":")
		return hostPort{host: host, port: port, hasPort: hasPort}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return hostPort{}, fmt.Errorf("an IPv6 address needs brackets: write ip:[%s] or ip:[%s]:443", s, s)
	}
	return hostPort{}, fmt.Errorf("too many ':' in %q: want ADDRESS[:PORT]", s)
}

// FormatOrigin renders an origin in the syntax ParseOrigin reads, so what
// `domain get` shows can be pasted into --origin. Zero fields are left out.
func FormatOrigin(o *outpostv1.Origin) string {
	var b strings.Builder
	if t := enumName(o.GetType()); t != "-" {
		b.WriteString(t)
		b.WriteByte(':')
	}
	if a, err := netip.ParseAddr(o.GetAddress()); err == nil && a.Is6() {
		b.WriteString("[" + o.GetAddress() + "]")
	} else {
		b.WriteString(o.GetAddress())
	}
	if o.GetPort() != 0 {
		fmt.Fprintf(&b, ":%d", o.GetPort())
	}
	if o.GetPriority() == outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP {
		b.WriteString(",backup")
	}
	if o.GetWeight() != 0 {
		fmt.Fprintf(&b, ",weight=%d", o.GetWeight())
	}
	return b.String()
}

// originsFlag is a repeatable --origin flag that parses each spec as it is given.
type originsFlag struct {
	origins []*outpostv1.Origin
}

func (f *originsFlag) Set(spec string) error {
	o, err := ParseOrigin(spec)
	if err != nil {
		return err
	}
	f.origins = append(f.origins, o)
	return nil
}

func (f *originsFlag) String() string {
	specs := make([]string, len(f.origins))
	for i, o := range f.origins {
		specs[i] = FormatOrigin(o)
	}
	return strings.Join(specs, " ")
}

func (f *originsFlag) Type() string { return "SPEC" }
