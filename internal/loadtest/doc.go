// Package loadtest is the engine of outpost-loadtest, the load-test harness
// of Outpost's edge nodes. It sends HTTP or HTTPS requests to edge nodes the
// way a CDN's clients would, and measures what they get back.
//
// # Targets
//
// Requests go either to fixed edge addresses (Config.Edges, picked round
// robin or at random) or to the edge nodes the scheduler names for each
// domain: over DNS (an A query for the domain's CNAME target, optionally
// with an EDNS Client Subnet option) or over gRPC
// (outpost.v1.SchedulerService/Resolve). Resolutions are cached for the TTL
// the scheduler gives.
//
// # Traffic
//
// Each request picks a domain uniformly from Config.Domains, a URL rank on
// a Zipf curve (rank 0 is the most popular) and an object size class from
// Config.SizeMix, and fills them into Config.PathTemplate ({i} and {size}).
// Over HTTPS the TLS server name (SNI) and the Host header are the domain.
// A share of the requests (Config.NewConnRatio) opens a new connection for
// itself; of those, a share (Config.ResumeRatio) offers a cached TLS session
// ticket. The others are sent on kept-alive connections. Each worker has
// its own connections and its own TLS session cache.
//
// # Models
//
// The open model (Config.Rate > 0) sends requests at a fixed arrival rate.
// Each request has an intended send time, start + k/rate, and its latency
// is measured from that time, so a slow server that makes requests wait is
// charged for the wait (no coordinated omission). Due requests wait in a
// bounded queue for one of Config.Concurrency workers; a request that finds
// the queue full is not sent and counts as an error of kind "backlog".
//
// The closed model (Config.Rate == 0) runs Config.Concurrency workers that
// each send their next request as soon as the previous one is answered:
// the maximum throughput the targets sustain.
//
// Every run is bounded by Config.Duration (at most MaxDuration) and by
// Config.Requests (at most MaxRequests). Unless Config.AllowRemote is set,
// every connection the engine makes (edges, DNS, gRPC) must go to a
// loopback address; the check is made on the resolved address of each dial.
//
// # Results
//
// Run returns a Result: throughput, latency percentiles from an HDR
// histogram, errors by kind, the cache hit ratio from X-Cache, requests per
// edge address and per node (from the Via header), the TLS resumption ratio
// and a per-second series. A Result is written as text (WriteText), as JSON
// (WriteJSON) carrying the encoded histograms so that Merge combines the
// results of several instances exactly, and as a self-contained HTML page
// with SVG plots (WriteHTML).
package loadtest
