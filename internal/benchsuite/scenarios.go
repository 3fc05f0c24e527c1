package benchsuite

import "time"

// The go test commands of the suite. Estimates are one run's wall time on
// the project's two-core machine, measured, with some margin.
var (
	benchUncached  = Bench{Pkg: "./node", Regex: "^BenchmarkUncached$", Benchtime: "3s", Count: 1, Repeat: 2, Quick: "1s", Estimate: 30 * time.Second}
	benchCacheHit  = Bench{Pkg: "./node", Regex: "^BenchmarkCacheHit$", Benchtime: "3s", Count: 1, Repeat: 3, Quick: "100ms", Estimate: 60 * time.Second}
	benchPurge     = Bench{Pkg: "./node", Regex: "^BenchmarkPurgePropagation$", Benchtime: "300x", Count: 3, Quick: "20x", Estimate: 20 * time.Second}
	benchDeploy    = Bench{Pkg: "./node", Regex: "^BenchmarkDeployToNodes$", Benchtime: "20x", Count: 3, Quick: "2x", Estimate: 45 * time.Second}
	benchMemObject = Bench{Pkg: "./node/cache", Regex: "^BenchmarkMemoryPerObject$", Benchtime: "3x", Count: 3, Quick: "1x", Estimate: 15 * time.Second}
	benchDNS       = Bench{Pkg: "./scheduler", Regex: "^BenchmarkDNS$", Benchtime: "3s", Count: 3, Quick: "100x", Estimate: 30 * time.Second}
	benchResolve   = Bench{Pkg: "./scheduler", Regex: "^BenchmarkResolve$", Benchtime: "3s", Count: 3, Quick: "100x", Estimate: 30 * time.Second}
	benchTLS       = Bench{Pkg: "./node", Regex: "^BenchmarkTLSHandshake$", Benchtime: "2s", Count: 1, Repeat: 1, Quick: "100x", Estimate: 10 * time.Minute, Timeout: 30 * time.Minute}
	benchMemCert   = Bench{Pkg: "./node", Regex: "^BenchmarkMemoryPerCertificate$", Benchtime: "1x", Count: 1, Quick: "1x", Estimate: 75 * time.Second}
	benchCollapse  = Bench{Pkg: "./node", Regex: "^BenchmarkCollapse$", Benchtime: "10x", Count: 1, Repeat: 2, Quick: "1x", Estimate: 30 * time.Second}
	benchResume    = Bench{Pkg: "./node", Regex: "^BenchmarkTLSResume$", Benchtime: "2s", Count: 1, Repeat: 2, Quick: "100x", Estimate: 30 * time.Second}
)

// The metrics the rows report.
var (
	reqPerSec        = Metric{Unit: "ns/op", Label: "throughput", Show: "req/s", Factor: 1e9, Invert: true, Higher: true}
	handshakesPerSec = Metric{Unit: "handshakes/s", Label: "rate", Show: "handshakes/s", Higher: true}
	handshakesPerOp  = Metric{Unit: "ns/op", Label: "rate", Show: "handshakes/s", Factor: 1e9, Invert: true, Higher: true}
	p99us            = Metric{Unit: "p99-µs", Label: "p99", Show: "ms", Factor: 1e-3}
	p99ms            = Metric{Unit: "p99-ms", Label: "p99", Show: "ms"}
	queriesPerCore   = Metric{Unit: "queries/s/core", Label: "rate per core", Show: "queries/s", Higher: true}
	callsPerCore     = Metric{Unit: "calls/s/core", Label: "rate per core", Show: "calls/s", Higher: true}
	bytesPerObject   = Metric{Unit: "bytes/object", Label: "heap", Show: "bytes/object"}
	bytesPerCert     = Metric{Unit: "B/cert", Label: "heap", Show: "bytes/cert"}
	serverCPU        = Metric{Unit: "server-cpu-µs/op", Label: "server CPU per request", Show: "µs"}
	originPerBurst   = Metric{Unit: "origin-requests/op", Label: "origin requests", Show: "per 1,000 misses"}
)

// vsNginx splits results by a name element "outpost" or "nginx";
// benchmarks without a peer use Sides{}.
var vsNginx = Sides{Outpost: "outpost", Peer: "nginx"}

// Scenarios is the suite `make bench` runs: one row of the report each,
// in the report's order. See the package comment, and "How `make bench`
// works" in docs/benchmarks.md for where each target comes from.
var Scenarios = []Scenario{
	{Name: "Uncached (no-store) over HTTPS: throughput", Bench: benchUncached, Sides: vsNginx, Metric: reqPerSec},
	{Name: "Uncached (no-store) over HTTPS: p99", Bench: benchUncached, Sides: vsNginx, Metric: p99us},
	{Name: "Cache hit, 1 KiB: throughput", Bench: benchCacheHit, Select: "^BenchmarkCacheHit/1k/", Sides: vsNginx, Metric: reqPerSec, Target: AtLeastPeer(1.0)},
	{Name: "Cache hit, 1 KiB: p99", Bench: benchCacheHit, Select: "^BenchmarkCacheHit/1k/", Sides: vsNginx, Metric: p99us, Target: AtMostPeer(1.5)},
	{Name: "Cache hit, 1 KiB: server CPU per request", Bench: benchCacheHit, Select: "^BenchmarkCacheHit/1k/", Sides: vsNginx, Metric: serverCPU},
	{Name: "Cache hit, 100 KiB: throughput", Bench: benchCacheHit, Select: "^BenchmarkCacheHit/100k/", Sides: vsNginx, Metric: reqPerSec, Target: AtLeastPeer(1.0)},
	{Name: "Cache hit, 100 KiB: p99", Bench: benchCacheHit, Select: "^BenchmarkCacheHit/100k/", Sides: vsNginx, Metric: p99us, Target: AtMostPeer(1.5)},
	{Name: "Cache hit, 100 KiB: server CPU per request", Bench: benchCacheHit, Select: "^BenchmarkCacheHit/100k/", Sides: vsNginx, Metric: serverCPU},
	{Name: "1,000 concurrent misses: origin requests", Bench: benchCollapse, Sides: vsNginx, Metric: originPerBurst},
	{Name: "1,000 concurrent misses: p99", Bench: benchCollapse, Sides: vsNginx, Metric: p99ms},
	{Name: "TLS full handshake, ECDSA, 1 cert: rate", Bench: benchTLS, Select: "^BenchmarkTLSHandshake/ec/certs=1/", Sides: vsNginx, Metric: handshakesPerSec},
	{Name: "TLS full handshake, ECDSA, 10,000 certs: rate", Bench: benchTLS, Select: "^BenchmarkTLSHandshake/ec/certs=10000/", Sides: vsNginx, Metric: handshakesPerSec, Target: Within(0.05, "^BenchmarkTLSHandshake/ec/certs=1/", "1 cert")},
	{Name: "TLS full handshake, RSA, 1 cert: rate", Bench: benchTLS, Select: "^BenchmarkTLSHandshake/rsa/certs=1/", Sides: vsNginx, Metric: handshakesPerSec},
	{Name: "TLS full handshake, RSA, 10,000 certs: rate", Bench: benchTLS, Select: "^BenchmarkTLSHandshake/rsa/certs=10000/", Sides: vsNginx, Metric: handshakesPerSec, Target: Within(0.05, "^BenchmarkTLSHandshake/rsa/certs=1/", "1 cert")},
	{Name: "TLS resumed handshake (TLS 1.2 ticket): rate", Bench: benchResume, Sides: vsNginx, Metric: handshakesPerOp},
	{Name: "TLS resumed handshake (TLS 1.2 ticket): p99", Bench: benchResume, Sides: vsNginx, Metric: p99ms},
	{Name: "Memory per certificate, ECDSA (100,000 loaded)", Bench: benchMemCert, Select: "^BenchmarkMemoryPerCertificate/ec/certs=100000$", Metric: bytesPerCert},
	{Name: "Memory per certificate, RSA (100,000 loaded)", Bench: benchMemCert, Select: "^BenchmarkMemoryPerCertificate/rsa/certs=100000$", Metric: bytesPerCert},
	{Name: "Memory per cached 1 KiB object", Bench: benchMemObject, Metric: bytesPerObject},
	{Name: "Purge to 3 nodes: p99", Bench: benchPurge, Metric: p99ms, Target: AtMost(100)},
	{Name: "Certificate deploy to 1,000 domains: p99", Bench: benchDeploy, Metric: p99ms, Target: AtMost(1000)},
	{Name: "Scheduler DNS over UDP with ECS: rate per core", Bench: benchDNS, Metric: queriesPerCore, Target: AtLeast(20000)},
	{Name: "Scheduler DNS over UDP with ECS: p99", Bench: benchDNS, Metric: p99ms, Target: AtMost(2)},
	{Name: "Scheduler gRPC Resolve: rate per core", Bench: benchResolve, Metric: callsPerCore, Target: AtLeast(10000)},
}
