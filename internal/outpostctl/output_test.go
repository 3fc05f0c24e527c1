package outpostctl

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestEnumName(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{enumName(outpostv1.OriginType_ORIGIN_TYPE_IP), "ip"},
		{enumName(outpostv1.DomainStatus_DOMAIN_STATUS_ONLINE), "online"},
		{enumName(outpostv1.Role_ROLE_READ_ONLY), "read-only"},
		{enumName(outpostv1.KeyType_KEY_TYPE_EC_P256), "ec-p256"},
		{enumName(outpostv1.RefreshType_REFRESH_TYPE_IGNORE_PARAMS), "ignore-params"},
		{enumName(outpostv1.NodeHealth_NODE_HEALTH_DISCONNECTED), "disconnected"},
		{enumName(outpostv1.Scope_SCOPE_UNSPECIFIED), "-"},
		{enumName(outpostv1.Scope(42)), "42"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseEnum(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want outpostv1.BusinessType
	}{
		{"web", outpostv1.BusinessType_BUSINESS_TYPE_WEB},
		{"Download", outpostv1.BusinessType_BUSINESS_TYPE_DOWNLOAD},
		{" video ", outpostv1.BusinessType_BUSINESS_TYPE_VIDEO},
		{"BUSINESS_TYPE_DYNAMIC", outpostv1.BusinessType_BUSINESS_TYPE_DYNAMIC},
	} {
		got, err := parseEnum[outpostv1.BusinessType]("--business-type", tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseEnum(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	role, err := parseEnum[outpostv1.Role]("--role", "read_only")
	if err != nil || role != outpostv1.Role_ROLE_READ_ONLY {
		t.Errorf("parseEnum(read_only) = %v, %v", role, err)
	}
	for _, bad := range []string{"", "unspecified", "BUSINESS_TYPE_UNSPECIFIED", "0", "1", "webb"} {
		_, err := parseEnum[outpostv1.BusinessType]("--business-type", bad)
		if err == nil {
			t.Errorf("parseEnum(%q) succeeded", bad)
			continue
		}
		want := `invalid --business-type "` + bad + `": want web, download, video or dynamic`
		if err.Error() != want {
			t.Errorf("parseEnum(%q) error = %q, want %q", bad, err, want)
		}
	}
}

func TestEnumFlag(t *testing.T) {
	f := newEnumFlag(outpostv1.Scope_SCOPE_MAINLAND)
	if f.String() != "mainland" || f.Type() != "mainland|overseas|global" {
		t.Fatalf("String() = %q, Type() = %q", f.String(), f.Type())
	}
	if err := f.Set("global"); err != nil || f.value != outpostv1.Scope_SCOPE_GLOBAL {
		t.Fatalf("Set(global): %v, value %v", err, f.value)
	}
	err := f.Set("moon")
	if err == nil || err.Error() != "want mainland, overseas or global" {
		t.Fatalf("Set(moon) error = %v", err)
	}
	if f.value != outpostv1.Scope_SCOPE_GLOBAL {
		t.Fatalf("a failed Set changed the value to %v", f.value)
	}
	redirect := newEnumFlag(outpostv1.RedirectPolicy(0))
	if redirect.String() != "" || strings.Join(redirect.choices(), ",") != "off,https,http" {
		t.Fatalf("redirect flag: String() = %q, choices %v", redirect.String(), redirect.choices())
	}
}

func sampleDomain() *outpostv1.Domain {
	created := time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC)
	return &outpostv1.Domain{
		Name:         "cdn.example.com",
		Account:      "acme",
		Cname:        "cdn.example.com.cdn.outpost.test",
		Status:       outpostv1.DomainStatus_DOMAIN_STATUS_ONLINE,
		BusinessType: outpostv1.BusinessType_BUSINESS_TYPE_DOWNLOAD,
		Scope:        outpostv1.Scope_SCOPE_GLOBAL,
		Origins: []*outpostv1.Origin{
			{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "203.0.113.10", Port: 443, Priority: outpostv1.OriginPriority_ORIGIN_PRIORITY_PRIMARY, Weight: 20},
			{Type: outpostv1.OriginType_ORIGIN_TYPE_OSS, Address: "bucket.oss.example.com", Priority: outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP},
		},
		Https: &outpostv1.HttpsSettings{
			Enabled: true, CertificateId: "cert-1", Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS,
		},
		OriginSettings: &outpostv1.OriginSettings{
			Sni:            &outpostv1.OriginSni{Enabled: true, Value: "origin.example.com"},
			ProtocolPolicy: outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS,
		},
		CreateTime: timestamppb.New(created),
		Revision:   42,
	}
}

func TestDomainTableOutput(t *testing.T) {
	resp := &outpostv1.GetDomainResponse{Domain: sampleDomain()}
	var out bytes.Buffer
	err := render(&out, outputTable, resp, func(w io.Writer) error { return writeDomain(w, resp.GetDomain()) })
	if err != nil {
		t.Fatal(err)
	}
	want := `Name:                      cdn.example.com
CNAME:                     cdn.example.com.cdn.outpost.test
Status:                    online
Business type:             download
Scope:                     global
Origins:                   ip:203.0.113.10:443,weight=20
                           oss:bucket.oss.example.com,backup
HTTPS:                     on, certificate cert-1, HTTP redirected to HTTPS
Origin SNI:                origin.example.com
Origin Host header:        (the accelerated domain)
Origin protocol:           https
Origin certificate check:  on, against the system's root CAs
Account:                   acme
Created:                   2025-03-01T12:30:00Z
Updated:                   -
Revision:                  42
`
	if out.String() != want {
		t.Fatalf("domain view:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	list := []*outpostv1.Domain{sampleDomain(), {Name: "b.example.com", Status: outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE}}
	if err := writeDomainTable(&out, list); err != nil {
		t.Fatal(err)
	}
	want = `NAME              STATUS    CNAME                              BUSINESS   SCOPE    HTTPS   ORIGINS
cdn.example.com   online    cdn.example.com.cdn.outpost.test   download   global   on      ip:203.0.113.10:443,weight=20 oss:bucket.oss.example.com,backup
b.example.com     offline   -                                  -          -        off     -
`
	if out.String() != want {
		t.Fatalf("domain table:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestDomainJSONOutput(t *testing.T) {
	resp := &outpostv1.GetDomainResponse{Domain: sampleDomain()}
	var out bytes.Buffer
	err := render(&out, outputJSON, resp, func(io.Writer) error {
		t.Fatal("json mode drew a table")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, "{\n") || !strings.HasSuffix(s, "}\n") || strings.Count(s, "\n") < 10 {
		t.Fatalf("want indented multi-line JSON, got:\n%s", s)
	}
	for _, want := range []string{`"ORIGIN_TYPE_IP"`, `"cdn.example.com.cdn.outpost.test"`, `"2025-03-01T12:30:00Z"`, `"revision": "42"`} {
		if !strings.Contains(strings.ReplaceAll(s, ":  ", ": "), want) {
			t.Errorf("JSON lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "updateTime") || strings.Contains(s, "skipVerify") {
		t.Errorf("JSON shows unset fields:\n%s", s)
	}
	var back outpostv1.GetDomainResponse
	if err := protojson.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not parse as GetDomainResponse: %v\n%s", err, s)
	}
	if !proto.Equal(&back, resp) {
		t.Fatalf("JSON round trip changed the response:\ngot  %v\nwant %v", &back, resp)
	}
}

func TestTableCellsAreOneLine(t *testing.T) {
	var out bytes.Buffer
	tb := newTable(&out, "A", "B")
	tb.row("x\ty", "line1\nline2")
	tb.row("", "z")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	want := "A     B\nx y   line1 line2\n-     z\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestTimestamp(t *testing.T) {
	if got := timestamp(nil); got != "-" {
		t.Errorf("timestamp(nil) = %q", got)
	}
	ts := timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)))
	if got := timestamp(ts); got != "2025-01-02T02:04:05Z" {
		t.Errorf("timestamp = %q", got)
	}
}

func TestValidUntil(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &outpostv1.Certificate{NotAfter: timestamppb.New(now.Add(30 * 24 * time.Hour))}
	if got := validUntil(c, now); got != "2025-01-31T00:00:00Z (30 days left)" {
		t.Errorf("got %q", got)
	}
	if got := validUntil(c, now.Add(31*24*time.Hour)); !strings.HasSuffix(got, "(expired)") {
		t.Errorf("got %q", got)
	}
}

func TestPublicPEMDropsKeys(t *testing.T) {
	chain := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" +
		"-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"
	got := publicPEM(chain)
	if strings.Contains(got, "PRIVATE KEY") || !strings.Contains(got, "BEGIN CERTIFICATE") {
		t.Fatalf("publicPEM = %q", got)
	}
}

func TestNodeTable(t *testing.T) {
	seen := timestamppb.New(time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC))
	resp := &outpostv1.ListNodesResponse{
		CurrentRevision: 42,
		Nodes: []*outpostv1.Node{
			{Name: "edge-fra-1", Region: "eu-central", Health: outpostv1.NodeHealth_NODE_HEALTH_CONNECTED, AppliedRevision: 42, LastSeen: seen},
			{Name: "edge-sin-1", Region: "ap-southeast", Health: outpostv1.NodeHealth_NODE_HEALTH_DISCONNECTED, AppliedRevision: 40, Draining: true,
				LastNack: &outpostv1.Nack{Revision: 41, Error: "certificate cert-1:\nbad key"}},
		},
	}
	var out bytes.Buffer
	if err := writeNodeTable(&out, resp); err != nil {
		t.Fatal(err)
	}
	want := `NAME         REGION         HEALTH         APPLIED-REVISION   LAST-NACK                         DRAINING   LAST-SEEN
edge-fra-1   eu-central     connected      42/42              -                                 no         2025-05-06T07:08:09Z
edge-sin-1   ap-southeast   disconnected   40/42              41: certificate cert-1: bad key   yes        -
`
	if out.String() != want {
		t.Fatalf("node table:\n%s\nwant:\n%s", out.String(), want)
	}
}
