package devcluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
)

// EndpointsFile is the name of the endpoints file under Config.Dir.
const EndpointsFile = "endpoints.json"

// Endpoints is where everything of a running dev cluster is, and the tokens
// to use it. It is written to Dir/endpoints.json (mode 0600) for scripts and
// tests.
type Endpoints struct {
	// Dir is the cluster's state directory (absolute).
	Dir string `json:"dir"`
	// EtcdEndpoints are the embedded etcd's client URLs.
	EtcdEndpoints []string `json:"etcd_endpoints"`
	// Controller is the controller's gRPC address, host:port.
	Controller string `json:"controller"`
	// Account is the demo account Token administers.
	Account string `json:"account"`
	// Token is the demo account's admin token.
	Token string `json:"token"`
	// OperatorToken is the bootstrap operator token.
	OperatorToken string `json:"operator_token"`
	// CAFile is the cluster CA certificate (PEM) that the controller's TLS
	// chains to, for outpostctl --tls-ca (OUTPOST_TLS_CA) and grpcurl -cacert.
	CAFile string `json:"ca_file"`
	// CNAMESuffix is the zone of the domains' CNAMEs.
	CNAMESuffix string `json:"cname_suffix"`
	// SchedulerGRPC and SchedulerDNS are the scheduler's addresses; DNS is
	// served over UDP and TCP.
	SchedulerGRPC string `json:"scheduler_grpc"`
	SchedulerDNS  string `json:"scheduler_dns"`
	// Nodes are the edge nodes.
	Nodes []NodeEndpoint `json:"nodes"`
	// OriginHTTP and OriginHTTPS are the demo origin's addresses.
	OriginHTTP  string `json:"origin_http"`
	OriginHTTPS string `json:"origin_https"`
	// DemoDomain is the pre-configured accelerated domain, DemoCNAME its
	// CNAME, DemoOriginNames the demo origin's virtual hosts.
	DemoDomain      string   `json:"demo_domain"`
	DemoOriginNames []string `json:"demo_origin_names"`
	DemoCNAME       string   `json:"demo_cname"`
	// DemoCertFile is the demo domain's self-signed certificate and
	// OriginCAFile the demo origin's CA, both for curl --cacert.
	// DemoCAFiles lists both.
	DemoCertFile string   `json:"demo_cert_file"`
	OriginCAFile string   `json:"origin_ca_file"`
	DemoCAFiles  []string `json:"demo_ca_files"`
	// DemoClientSubnets maps each dev region to a client subnet that the
	// scheduler's coverage zone places there, for dig +subnet.
	DemoClientSubnets map[string]string `json:"demo_client_subnets"`
	// CoverageZoneFile is the scheduler's coverage zone.
	CoverageZoneFile string `json:"coverage_zone_file"`
	// AcmeDirectory is the directory URL of the dev ACME CA (Pebble), from
	// which the controller gets free certificates; AcmeDNS is the DNS
	// server (TCP) its validation authority asks, which answers every name
	// with edge-1's address. AcmeRootFile holds the roots its certificates
	// chain to, for curl --cacert: this start's first, then those of
	// earlier starts, as Pebble makes a new root at each.
	AcmeDirectory string `json:"acme_directory"`
	AcmeDNS       string `json:"acme_dns"`
	AcmeRootFile  string `json:"acme_root_file"`
}

// NodeEndpoint is one edge node.
type NodeEndpoint struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	HTTP   string `json:"http"`
	HTTPS  string `json:"https"`
}

// writeEndpoints writes ep to path, mode 0600 (it holds tokens).
func writeEndpoints(path string, ep Endpoints) error {
	b, err := json.MarshalIndent(ep, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'), 0o600)
}

// printTry prints the addresses and a few commands to try.
func printTry(w io.Writer, ep Endpoints, endpointsPath string) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("")
	p("Outpost dev cluster is up. State: %s", ep.Dir)
	p("Endpoints and tokens (also the operator token): %s", endpointsPath)
	p("")
	p("  controller   %s  (etcd %s)", ep.Controller, strings.Join(ep.EtcdEndpoints, ","))
	p("  scheduler    gRPC %s, DNS %s (zone %s)", ep.SchedulerGRPC, ep.SchedulerDNS, ep.CNAMESuffix)
	for _, n := range ep.Nodes {
		p("  %-12s http %s  https %s  (region %s)", n.Name, n.HTTP, n.HTTPS, n.Region)
	}
	p("  demo origin  http %s  https %s  (SNI %s)", ep.OriginHTTP, ep.OriginHTTPS, strings.Join(ep.DemoOriginNames, " or "))
	p("  demo domain  %s  CNAME %s", ep.DemoDomain, ep.DemoCNAME)
	if ep.AcmeDirectory != "" {
		p("  ACME CA      %s  (Pebble; DNS %s; roots %s)", ep.AcmeDirectory, ep.AcmeDNS, ep.AcmeRootFile)
	}
	p("")
	p("What to try, in another terminal from the repository root:")
	p("")
	p("  export OUTPOST_CONTROLLER=%s", ep.Controller)
	p("  export OUTPOST_TLS_CA=%s", ep.CAFile)
	p("  export OUTPOST_TOKEN=%s", ep.Token)
	p("  bin/outpostctl domain list")
	p("  bin/outpostctl domain get %s -o json", ep.DemoDomain)
	p("  bin/outpostctl node list")
	p("  bin/outpostctl origin sni %s --value %s   # switch the origin vhost the edges fetch from", ep.DemoDomain, OriginNameB)
	if len(ep.Nodes) > 1 {
		host, port := splitHostPort(ep.Nodes[0].HTTPS)
		p("  curl --resolve %s:%s:%s --cacert %s https://%s:%s/whoami.txt", ep.DemoDomain, port, host, ep.DemoCertFile, ep.DemoDomain, port)
		p("  curl -H 'Host: %s' http://%s/whoami.txt", ep.DemoDomain, ep.Nodes[1].HTTP)
		p("")
		p("The edge cache (/time.txt is cacheable for an hour and says when the origin made it):")
		p("")
		p("  curl -si -H 'Host: %s' http://%s/time.txt | grep -iE '^(x-cache|age)|made'   # MISS, then HIT", ep.DemoDomain, ep.Nodes[0].HTTP)
		p("  bin/outpostctl refresh http://%s/time.txt && bin/outpostctl task list   # purge on every node", ep.DemoDomain)
		p("  bin/outpostctl prefetch http://%s/1k.bin     # warm every node", ep.DemoDomain)
		p("  bin/outpostctl cache rule add %s --ext bin --ttl 7d", ep.DemoDomain)
	}
	if ep.AcmeDirectory != "" && len(ep.Nodes) > 0 {
		host, port := splitHostPort(ep.Nodes[0].HTTPS)
		p("")
		p("Free certificates: Pebble, a test ACME CA, validates over HTTP on %s as if every name led there:", ep.Nodes[0].HTTP)
		p("")
		p("  bin/outpostctl domain add %s --origin ip:%s", FreeDemoDomain, ep.OriginHTTP)
		p("  bin/outpostctl origin protocol %s --policy http   # that port speaks HTTP, also to HTTPS clients", FreeDemoDomain)
		p("  bin/outpostctl https enable %s --free", FreeDemoDomain)
		p("  bin/outpostctl https get %s     # free certificate issued within seconds", FreeDemoDomain)
		p("  bin/outpostctl cert info %s", FreeDemoDomain)
		p("  curl --resolve %s:%s:%s --cacert %s https://%s:%s/whoami.txt", FreeDemoDomain, port, host, ep.AcmeRootFile, FreeDemoDomain, port)
	}
	p("")
	p("The scheduler answers the nearest edge nodes for the client's subnet (EDNS Client Subnet):")
	p("")
	host, port := splitHostPort(ep.SchedulerDNS)
	for _, region := range sortedKeys(ep.DemoClientSubnets) {
		p("  dig @%s -p %s %s A +subnet=%s   # a client in the %s", host, port, ep.DemoCNAME, ep.DemoClientSubnets[region], region)
	}
	if regions := sortedKeys(ep.DemoClientSubnets); len(regions) > 0 {
		p("  bin/outpostctl resolve %s --client-ip %s --scheduler %s", ep.DemoDomain, hostIn(ep.DemoClientSubnets[regions[0]]), ep.SchedulerGRPC)
	}
	p("")
	p("The demo origin directly (one IP and port, a certificate per SNI name):")
	p("")
	host, port = splitHostPort(ep.OriginHTTPS)
	for _, name := range ep.DemoOriginNames {
		p("  curl --resolve %s:%s:%s --cacert %s https://%s:%s/whoami.txt", name, port, host, ep.OriginCAFile, name, port)
	}
	p("  curl http://%s/whoami.txt", ep.OriginHTTP)
	p("")
	p("Ctrl-C stops the cluster; running it again with the same --dir keeps its state.")
	io.WriteString(w, b.String())
}

func splitHostPort(addr string) (string, string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return host, port
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hostIn is an address inside a CIDR, for examples ("" when it does not
// parse).
func hostIn(cidr string) string {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return ""
	}
	ip := append(net.IP(nil), n.IP...)
	ip[len(ip)-1] |= 7
	return ip.String()
}
