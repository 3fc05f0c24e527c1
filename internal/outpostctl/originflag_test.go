package outpostctl

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

const (
	typeIP     = outpostv1.OriginType_ORIGIN_TYPE_IP
	typeDomain = outpostv1.OriginType_ORIGIN_TYPE_DOMAIN
	typeOSS    = outpostv1.OriginType_ORIGIN_TYPE_OSS
	typeFC     = outpostv1.OriginType_ORIGIN_TYPE_FC
	primary    = outpostv1.OriginPriority_ORIGIN_PRIORITY_PRIMARY
	backup     = outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP
)

var parseOriginTests = []struct {
	spec    string
	want    *outpostv1.Origin
	wantErr string // substring of the error; "" for success
}{
	{spec: "ip:203.0.113.10", want: &outpostv1.Origin{Type: typeIP, Address: "203.0.113.10", Priority: primary}},
	{spec: "ip:203.0.113.10:443", want: &outpostv1.Origin{Type: typeIP, Address: "203.0.113.10", Port: 443, Priority: primary}},
	{spec: "ip:[2001:db8::1]:443", want: &outpostv1.Origin{Type: typeIP, Address: "2001:db8::1", Port: 443, Priority: primary}},
	{spec: "ip:[2001:DB8:0::1]", want: &outpostv1.Origin{Type: typeIP, Address: "2001:db8::1", Priority: primary}},
	{spec: "domain:origin.example.com:443,weight=20", want: &outpostv1.Origin{Type: typeDomain, Address: "origin.example.com", Port: 443, Priority: primary, Weight: 20}},
	{spec: "oss:bucket.oss.example.com:443,backup", want: &outpostv1.Origin{Type: typeOSS, Address: "bucket.oss.example.com", Port: 443, Priority: backup}},
	{spec: "fc:fn.fc.example.com,primary,weight=100", want: &outpostv1.Origin{Type: typeFC, Address: "fn.fc.example.com", Priority: primary, Weight: 100}},
	{spec: " Domain:Origin.Example.COM. , Backup , weight=1 ", want: &outpostv1.Origin{Type: typeDomain, Address: "origin.example.com", Priority: backup, Weight: 1}},
	{spec: "domain:localhost:80", want: &outpostv1.Origin{Type: typeDomain, Address: "localhost", Port: 80, Priority: primary}},

	{spec: "", wantErr: "empty origin"},
	{spec: "   ", wantErr: "empty origin"},
	{spec: "203.0.113.10", wantErr: "missing origin type: want TYPE:ADDRESS[:PORT][,backup|,primary][,weight=N] with TYPE ip, domain, oss or fc, e.g. ip:203.0.113.10"},
	{spec: "origin.example.com", wantErr: "missing origin type: want TYPE:ADDRESS[:PORT][,backup|,primary][,weight=N] with TYPE ip, domain, oss or fc, e.g. domain:origin.example.com"},
	{spec: "origin.example.com:443", wantErr: "e.g. domain:origin.example.com:443"},
	{spec: "2001:db8::1", wantErr: "e.g. ip:2001:db8::1"},
	{spec: "[2001:db8::1]:443", wantErr: "missing origin type"},
	{spec: "https://origin.example.com", wantErr: "an origin is not a URL"},
	{spec: "cname:origin.example.com", wantErr: `unknown origin type "cname": want ip, domain, oss or fc`},
	{spec: "ip:", wantErr: `missing address after "ip:"`},
	{spec: "ip::443", wantErr: `missing address after "ip:"`},
	{spec: "ip:origin.example.com", wantErr: `"origin.example.com" is not an IP address: use domain:origin.example.com for a host name`},
	{spec: "ip:2001:db8::1", wantErr: "an IPv6 address needs brackets: write ip:[2001:db8::1] or ip:[2001:db8::1]:443"},
	{spec: "domain:2001:db8::1:443", wantErr: "an IPv6 address needs brackets: write ip:[2001:db8::1:443]"},
	{spec: "ip:[2001:db8::1", wantErr: "missing ']' after the IPv6 address"},
	{spec: "ip:[2001:db8::1]443", wantErr: `unexpected "443" after ']': want :PORT`},
	{spec: "ip:[203.0.113.10]", wantErr: "brackets are only for IPv6 addresses: write ip:203.0.113.10"},
	{spec: "ip:[fe80::1%eth0]", wantErr: `IPv6 zone "eth0" is not allowed`},
	{spec: "ip:203.0.113.10:80:80", wantErr: `too many ':' in "203.0.113.10:80:80"`},
	{spec: "ip:203.0.113.10:http", wantErr: `invalid port "http": want a number from 1 to 65535`},
	{spec: "ip:203.0.113.10:0", wantErr: `invalid port "0"`},
	{spec: "ip:203.0.113.10:65536", wantErr: `invalid port "65536"`},
	{spec: "ip:203.0.113.10:", wantErr: `invalid port ""`},
	{spec: "domain:203.0.113.10", wantErr: `"203.0.113.10" is an IP address: use ip:203.0.113.10`},
	{spec: "domain:[2001:db8::1]", wantErr: "brackets are only for IPv6 addresses of ip origins"},
	{spec: "domain:bad_name.example.com", wantErr: `"bad_name.example.com" is not a valid host name`},
	{spec: "domain:bücher.example", wantErr: "non-ASCII"},
	{spec: "ip:203.0.113.10,", wantErr: "empty option after ','"},
	{spec: "ip:203.0.113.10,backup,primary", wantErr: "priority given twice"},
	{spec: "ip:203.0.113.10,weight=5,weight=6", wantErr: "weight given twice"},
	{spec: "ip:203.0.113.10,weight=0", wantErr: `invalid weight "0": want weight=N with N a whole number from 1 to 100`},
	{spec: "ip:203.0.113.10,weight=101", wantErr: `invalid weight "101"`},
	{spec: "ip:203.0.113.10,weight=ten", wantErr: `invalid weight "ten"`},
	{spec: "ip:203.0.113.10,weight", wantErr: `invalid weight ""`},
	{spec: "ip:203.0.113.10,backup=yes", wantErr: `unknown option "backup=yes": want backup, primary or weight=N`},
	{spec: "ip:203.0.113.10,standby", wantErr: `unknown option "standby"`},
}

func TestParseOrigin(t *testing.T) {
	for _, tt := range parseOriginTests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseOrigin(tt.spec)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseOrigin(%q) = %v, want error containing %q", tt.spec, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseOrigin(%q) error = %q, want it to contain %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseOrigin(%q): %v", tt.spec, err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("ParseOrigin(%q) = %v, want %v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestFormatOrigin(t *testing.T) {
	for _, tt := range []struct {
		origin *outpostv1.Origin
		want   string
	}{
		{&outpostv1.Origin{Type: typeIP, Address: "203.0.113.10"}, "ip:203.0.113.10"},
		{&outpostv1.Origin{Type: typeIP, Address: "2001:db8::1", Port: 443, Priority: primary}, "ip:[2001:db8::1]:443"},
		{&outpostv1.Origin{Type: typeOSS, Address: "b.oss.example.com", Port: 443, Priority: backup, Weight: 20}, "oss:b.oss.example.com:443,backup,weight=20"},
		{&outpostv1.Origin{Address: "legacy.example.com"}, "legacy.example.com"},
	} {
		if got := FormatOrigin(tt.origin); got != tt.want {
			t.Errorf("FormatOrigin(%v) = %q, want %q", tt.origin, got, tt.want)
		}
	}
}

// TestOriginRoundTrip checks that every spec the table accepts survives
// FormatOrigin and a second parse.
func TestOriginRoundTrip(t *testing.T) {
	for _, tt := range parseOriginTests {
		if tt.wantErr == "" {
			checkRoundTrip(t, tt.spec)
		}
	}
}

func checkRoundTrip(t *testing.T, spec string) {
	t.Helper()
	o, err := ParseOrigin(spec)
	if err != nil {
		return
	}
	formatted := FormatOrigin(o)
	again, err := ParseOrigin(formatted)
	if err != nil {
		t.Fatalf("ParseOrigin(%q) = %v; FormatOrigin gives %q, which does not parse: %v", spec, o, formatted, err)
	}
	if !proto.Equal(o, again) {
		t.Fatalf("ParseOrigin(%q) = %v; FormatOrigin gives %q, which parses to %v", spec, o, formatted, again)
	}
	if f2 := FormatOrigin(again); f2 != formatted {
		t.Fatalf("FormatOrigin is not stable for %q: %q then %q", spec, formatted, f2)
	}
}

func FuzzParseOrigin(f *testing.F) {
	for _, tt := range parseOriginTests {
		f.Add(tt.spec)
	}
	f.Add("ip:[::ffff:192.0.2.1]:443,backup,weight=7")
	f.Add("oss:a.b,,weight=3")
	f.Fuzz(func(t *testing.T, spec string) {
		o, err := ParseOrigin(spec)
		if err != nil {
			if o != nil {
				t.Fatalf("ParseOrigin(%q) returned both an origin and an error", spec)
			}
			return
		}
		if o.GetType() == outpostv1.OriginType_ORIGIN_TYPE_UNSPECIFIED || o.GetAddress() == "" {
			t.Fatalf("ParseOrigin(%q) = %v: missing type or address", spec, o)
		}
		checkRoundTrip(t, spec)
	})
}

func TestOriginsFlag(t *testing.T) {
	var f originsFlag
	for _, spec := range []string{"ip:203.0.113.10", "domain:origin.example.com:443,backup"} {
		if err := f.Set(spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Set("ip:nope"); err == nil {
		t.Fatal("Set accepted a bad spec")
	}
	if len(f.origins) != 2 {
		t.Fatalf("got %d origins, want 2", len(f.origins))
	}
	if got, want := f.String(), "ip:203.0.113.10 domain:origin.example.com:443,backup"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}
