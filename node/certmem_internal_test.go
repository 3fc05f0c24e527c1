package node

import (
	"crypto/tls"
	"fmt"
	"runtime"
	"testing"

	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// BenchmarkMemoryPerCertificate measures the Go heap one loaded
// certificate costs an edge node: the config as the controller sent it
// (each CertificateBundle's PEM strings, in the desired config) plus the
// applied state build makes of it (the parsed tls.Certificate: DER chain,
// private key, parsed leaf), with N bundles, after a GC, minus the same
// for an empty config, divided by N. Each bundle is what an ACME-issued
// certificate brings: a leaf for one name and its intermediate, and a
// PKCS#8 key. All bundles share one key (as separate strings, as the
// node would decode them from the stream), which makes generating 100,000
// fast and costs the node the same as distinct keys. Reproduce:
//
//	go test -run '^$' -bench BenchmarkMemoryPerCertificate -benchtime 1x ./node
//
// Metrics: B/cert in all (HeapInuse), desired-B/cert the bundles alone,
// state-B/cert what build adds; ns/op is build's time for the whole
// config.
func BenchmarkMemoryPerCertificate(b *testing.B) {
	for _, key := range []struct {
		name string
		typ  outpostv1.KeyType
	}{{"ec", outpostv1.KeyType_KEY_TYPE_EC_P256}, {"rsa", outpostv1.KeyType_KEY_TYPE_RSA_2048}} {
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/certs=%d", key.name, n), func(b *testing.B) {
				benchCertMemory(b, key.typ, n)
			})
		}
	}
}

func benchCertMemory(b *testing.B, typ outpostv1.KeyType, n int) {
	root := certstest.NewCA(b, "bench root")
	inter := root.NewIntermediate(b, "bench intermediate")
	key := certstest.Issue(b, certstest.Options{KeyType: typ}).Key
	var keyPEM []byte
	chains := make([][]byte, n)
	for i := range chains {
		p := certstest.Issue(b, certstest.Options{DNSNames: []string{fmt.Sprintf("d%d.example.test", i)}, Key: key, Issuer: inter})
		chains[i] = append(p.CertPEM, inter.CertPEM...)
		keyPEM = p.KeyPEM
	}
	// load builds the desired config and the state for the first k
	// bundles, measuring the heap after the desired config alone
	// (inDesired) and after both (inAll), relative to before.
	load := func(k int) (st *state, inDesired, inAll uint64) {
		before := heapInUse()
		bundles := make([]*outpostv1.CertificateBundle, k)
		for i := range bundles {
			// Distinct strings, as the node has them from the stream.
			bundles[i] = &outpostv1.CertificateBundle{Id: fmt.Sprintf("cert-%016x", i), CertificatePem: string(chains[i]), PrivateKeyPem: string(keyPEM)}
		}
		d := (*desired)(nil).merge(&outpostv1.StreamConfigResponse{Revision: 1, Snapshot: true, Certificates: bundles})
		bundles = nil
		afterDesired := heapInUse()
		b.StartTimer()
		st, err := build(d, emptyState)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		after := heapInUse()
		return st, afterDesired - before, after - before
	}
	b.StopTimer()
	b.ResetTimer()
	var perCert, desiredPerCert float64
	for range b.N {
		empty, _, base := load(0)
		runtime.KeepAlive(empty)
		st, inDesired, inAll := load(n)
		if len(st.certs) != n {
			b.Fatalf("%d certificates loaded, want %d", len(st.certs), n)
		}
		runtime.KeepAlive(st)
		perCert = (float64(inAll) - float64(base)) / float64(n)
		desiredPerCert = float64(inDesired) / float64(n)
	}
	b.ReportMetric(perCert, "B/cert")
	b.ReportMetric(desiredPerCert, "desired-B/cert")
	b.ReportMetric(perCert-desiredPerCert, "state-B/cert")
}

// heapInUse is HeapInuse after two GCs.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkGetCertificate measures the node's certificate selection by SNI
// (getCertificate: normalise, look up the site, count the handshake) with
// 1 and 10,000 domains loaded, each with its own certificate, cycling over
// all loaded names. Reproduce:
//
//	go test -run '^$' -bench BenchmarkGetCertificate -benchmem ./node
func BenchmarkGetCertificate(b *testing.B) {
	for _, n := range []int{1, 10_000} {
		b.Run(fmt.Sprintf("certs=%d", n), func(b *testing.B) {
			ca := certstest.NewCA(b, "bench CA")
			key := certstest.Issue(b, certstest.Options{}).Key
			msg := &outpostv1.StreamConfigResponse{Revision: 1, Snapshot: true}
			hellos := make([]*tls.ClientHelloInfo, n)
			for i := range n {
				name := fmt.Sprintf("d%d.example.test", i)
				p := certstest.Issue(b, certstest.Options{DNSNames: []string{name}, Key: key, Issuer: ca})
				id := fmt.Sprintf("cert-%016x", i)
				msg.Certificates = append(msg.Certificates, &outpostv1.CertificateBundle{Id: id, CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)})
				msg.Domains = append(msg.Domains, &outpostv1.Domain{Name: name,
					Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "127.0.0.1", Port: 80}},
					Https:   &outpostv1.HttpsSettings{Enabled: true, CertificateId: id}})
				hellos[i] = &tls.ClientHelloInfo{ServerName: name}
			}
			st, err := build((*desired)(nil).merge(msg), emptyState)
			if err != nil {
				b.Fatal(err)
			}
			nd := &Node{metrics: newMetrics()}
			nd.state.Store(st)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if c, err := nd.getCertificate(hellos[i%n]); c == nil || err != nil {
					b.Fatalf("%s: %v", hellos[i%n].ServerName, err)
				}
			}
		})
	}
}
