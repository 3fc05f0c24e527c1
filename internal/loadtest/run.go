package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Stop reasons, the keys of Result.StopReasons.
const (
	StopDuration    = "duration"    // the duration passed
	StopRequests    = "requests"    // the request bound was reached
	StopInterrupted = "interrupted" // the context was cancelled (Ctrl-C)
)

// abortGrace is how long requests in flight may still finish after an
// interrupt before they are cut off (and counted in Result.Aborted).
const abortGrace = time.Second

// idleConnBudget bounds the idle kept-alive connections of all workers
// together; each worker gets an equal share (at least 2).
const idleConnBudget = 8192

// runner is one run in progress.
type runner struct {
	cfg     *Config
	tmpl    pathTemplate
	targets *targets
	hosts   hosts
	dialer  *net.Dialer
	seed    uint64
	sizeCum []float64

	nextProtos       []string
	idlePerWorker    int
	sessionCacheSize int

	results  chan outcome
	issued   atomic.Int64
	inFlight atomic.Int64
	unsent   atomic.Int64

	stopOnce   sync.Once
	stopCh     chan struct{}
	stopReason string

	abortCtx    context.Context
	abortCancel context.CancelCauseFunc
}

// Run runs a load test and returns its result. Cancelling ctx (Ctrl-C)
// stops it early: no request starts after that, requests in flight get a
// second to finish, and the result covers what was done. An error is
// returned only when the test cannot start.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := cfg.checkTargets(ctx); err != nil {
		return nil, err
	}
	r, err := newRunner(&cfg)
	if err != nil {
		return nil, err
	}
	defer r.targets.close()
	return r.run(ctx)
}

func newRunner(cfg *Config) (*runner, error) {
	tmpl, err := parseTemplate(cfg.PathTemplate)
	if err != nil {
		return nil, err
	}
	t, err := newTargets(cfg)
	if err != nil {
		return nil, err
	}
	r := &runner{
		cfg:     cfg,
		tmpl:    tmpl,
		targets: t,
		hosts:   hosts{index: map[string]int{}},
		dialer:  guardedDialer(cfg.AllowRemote, cfg.Timeout),
		seed:    cfg.Seed,
		results: make(chan outcome, 4096),
		stopCh:  make(chan struct{}),
	}
	if r.seed == 0 {
		r.seed = rand.Uint64()
	}
	sum := 0.0
	for _, s := range cfg.SizeMix {
		sum += s.Weight
		r.sizeCum = append(r.sizeCum, sum)
	}
	r.nextProtos = []string{"http/1.1"}
	if cfg.HTTP2 {
		r.nextProtos = []string{"h2", "http/1.1"}
	}
	r.idlePerWorker = max(2, idleConnBudget/cfg.Concurrency)
	r.sessionCacheSize = min(max(64, 2*len(cfg.Domains)), 4096)
	r.abortCtx, r.abortCancel = context.WithCancelCause(context.Background())
	return r, nil
}

// stop ends the issuing of requests, once, for the first reason given.
func (r *runner) stop(reason string) {
	r.stopOnce.Do(func() {
		r.stopReason = reason
		close(r.stopCh)
	})
}

func (r *runner) stopped() bool {
	select {
	case <-r.stopCh:
		return true
	default:
		return false
	}
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	res := newResult()
	res.Instances = 1
	res.Settings = cfg.settings()
	if h, err := os.Hostname(); err == nil {
		res.Hosts = []string{h}
	}
	start := time.Now()
	res.Start = start
	seconds := map[int64]*Second{}

	collected := make(chan struct{})
	go func() {
		defer close(collected)
		r.collect(res, seconds, start)
	}()

	timer := time.AfterFunc(cfg.Duration, func() { r.stop(StopDuration) })
	defer timer.Stop()
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		select {
		case <-ctx.Done():
			r.stop(StopInterrupted)
			time.AfterFunc(abortGrace, func() { r.abortCancel(errAborted) })
		case <-r.stopCh:
		case <-watchDone:
		}
	}()

	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = newWorker(r, i)
	}
	if cfg.Rate > 0 {
		r.runOpen(start, workers)
	} else {
		r.runClosed(workers)
	}
	for _, w := range workers {
		w.close()
	}
	res.End = time.Now()
	r.abortCancel(nil)
	close(r.results)
	<-collected

	res.StopReasons[r.stopReason] = 1
	res.Unsent = r.unsent.Load()
	res.Resolutions = ResolveStats{Lookups: r.targets.lookups.Load(), Failures: r.targets.failures.Load()}
	if err := res.finish(seconds); err != nil {
		return nil, err
	}
	return res, nil
}

// send runs one request on w and hands its outcome to the collector.
func (r *runner) send(w *worker, intended time.Time) {
	r.inFlight.Add(1)
	o := w.do(r.abortCtx, intended)
	r.inFlight.Add(-1)
	r.results <- o
}

// runClosed runs the closed model: every worker sends its next request as
// soon as the previous one is done.
func (r *runner) runClosed(workers []*worker) {
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for !r.stopped() {
				if r.issued.Add(1) > r.cfg.Requests {
					r.stop(StopRequests)
					return
				}
				r.send(w, time.Now())
			}
		})
	}
	wg.Wait()
}

// runOpen runs the open model: request k is due at start + k/rate. A pacer
// queues each when it is due; the workers send them and measure latency
// from the due time. A due request that finds the queue full is not sent
// and counts as a "backlog" error.
func (r *runner) runOpen(start time.Time, workers []*worker) {
	cfg := r.cfg
	queue := make(chan time.Time, cfg.Backlog)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for due := range queue {
				if r.stopped() {
					r.unsent.Add(1)
					continue
				}
				r.send(w, due)
			}
		})
	}
	deadline := start.Add(cfg.Duration)
	interval := float64(time.Second) / cfg.Rate
	timer := time.NewTimer(time.Hour)
	timer.Stop()
pace:
	for k := int64(0); ; k++ {
		due := start.Add(time.Duration(float64(k) * interval))
		if !due.Before(deadline) {
			// Nothing more is due: the run ends at the deadline (the
			// duration timer), not now, so that the last requests queued
			// are not counted as unsent.
			<-r.stopCh
			break
		}
		if k >= cfg.Requests {
			r.stop(StopRequests)
			break
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-r.stopCh:
				timer.Stop()
				break pace
			}
		}
		if r.stopped() {
			break
		}
		r.issued.Add(1)
		select {
		case queue <- due:
		default:
			r.results <- outcome{intended: due, done: time.Now(), kind: KindBacklog, errMsg: fmt.Sprintf("%d requests already waiting for one of %d workers", cfg.Backlog, cfg.Concurrency)}
		}
	}
	close(queue)
	wg.Wait()
}

// collect counts outcomes until the results channel closes, and writes a
// progress line every second.
func (r *runner) collect(res *Result, seconds map[int64]*Second, start time.Time) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastReq int64
	lastTick := start
	for {
		select {
		case o, ok := <-r.results:
			if !ok {
				return
			}
			res.add(o, r.cfg.SizeMix, seconds, start)
		case now := <-tick.C:
			if r.cfg.Progress == nil {
				continue
			}
			rate := float64(res.Requests-lastReq) / now.Sub(lastTick).Seconds()
			lastReq, lastTick = res.Requests, now
			p99 := "-"
			if res.hist.TotalCount() > 0 {
				p99 = fmtMS(ms(res.hist.ValueAtPercentile(99)))
			}
			var errs int64
			for _, n := range res.Errors {
				errs += n
			}
			hit := "-"
			if withX := res.Responses - res.Cache[cacheNone]; withX > 0 {
				hit = fmt.Sprintf("%.1f%%", 100*float64(res.Cache["HIT"])/float64(withX))
			}
			fmt.Fprintf(r.cfg.Progress, "%5.0fs  %8.1f req/s  p99 %-9s errors %-7d hits %-6s in-flight %d\n",
				now.Sub(start).Seconds(), rate, p99, errs, hit, r.inFlight.Load())
		}
	}
}

// settings describes the configuration for the report.
func (c *Config) settings() Settings {
	s := Settings{
		Model:        "closed",
		Concurrency:  c.Concurrency,
		Duration:     c.Duration.String(),
		MaxRequests:  c.Requests,
		Timeout:      c.Timeout.String(),
		Pick:         c.Pick,
		Domains:      len(c.Domains),
		URLs:         c.URLs,
		ZipfS:        c.ZipfS,
		Path:         c.PathTemplate,
		Scheme:       c.Scheme,
		HTTP2:        c.HTTP2,
		NewConnRatio: c.NewConnRatio,
		ResumeRatio:  c.ResumeRatio,
	}
	if c.Rate > 0 {
		s.Model, s.Rate, s.Backlog = "open", c.Rate, c.Backlog
	}
	switch c.Resolve {
	case ResolveDNS:
		s.Targets = "DNS " + c.DNSServer
	case ResolveGRPC:
		s.Targets = "gRPC Resolve " + c.Scheduler
	default:
		s.Targets = "edges " + strings.Join(c.Edges, ",")
	}
	if c.Resolve != ResolveNone && c.ClientSubnet.IsValid() {
		s.Targets += " for client " + c.ClientSubnet.String()
	}
	for i, d := range c.Domains {
		if i == 3 {
			break
		}
		s.DomainSample = append(s.DomainSample, d.Name)
	}
	var mix []string
	for _, m := range c.SizeMix {
		mix = append(mix, fmt.Sprintf("%s:%g", m.Label, m.Weight))
	}
	s.SizeMix = strings.Join(mix, ",")
	return s
}

// fmtMS formats milliseconds for people.
func fmtMS(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.2fms", v)
	}
}
