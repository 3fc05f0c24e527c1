package controller

import (
	"context"
	"errors"
	"io"
	"regexp"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// configService serves the node-facing config stream: a snapshot, then the
// changes after it, from the config cache; ACKs and NACKs are recorded in
// the node's status record.
type configService struct {
	outpostv1.UnimplementedConfigDiscoveryServiceServer
	c *Controller
}

var _ outpostv1.ConfigDiscoveryServiceServer = (*configService)(nil)

var nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (s *configService) StreamConfig(stream outpostv1.ConfigDiscoveryService_StreamConfigServer) error {
	c := s.c
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	sub := first.GetSubscribe()
	if sub == nil {
		return apierr.InvalidArgument(apierr.ReasonInvalidArgument, "the first message on the config stream must be a Subscribe")
	}
	info := sub.GetNode()
	name := info.GetName()
	if !nodeNamePattern.MatchString(name) {
		return apierr.InvalidArgument(apierr.ReasonInvalidArgument, "node name %q is invalid: 1-63 letters, digits, '.', '_' or '-'", name)
	}
	// The member certificate, not the Subscribe message, says who the
	// caller is and whether it is an edge node or a scheduler.
	p := principalFrom(ctx)
	if name != p.Member {
		return apierr.PermissionDenied(apierr.ReasonMemberNameMismatch, "the certificate is for member %q, not %q", p.Member, name)
	}
	log := c.log.With("node", name)
	streamID := newID("stream")
	rec := &nodeRecord{rec: &storagev1.NodeRecord{Info: info, AppliedRevision: sub.GetLastAppliedRevision(), LastSeen: c.timestamp()}}
	edge := p.MemberRole == outpostv1.MemberRole_MEMBER_ROLE_NODE
	role := "scheduler"
	if edge {
		role = "node"
	}
	c.metrics.streams.WithLabelValues(role).Inc()
	defer c.metrics.streams.WithLabelValues(role).Dec()
	if edge {
		c.markConnected(ctx, rec, streamID)
		defer func() {
			// No session write of this stream (an ACK being handled by the
			// receive goroutine) may land after the close.
			rec.sessMu.Lock()
			defer rec.sessMu.Unlock()
			rec.closed = true
			c.sessions.close(name, streamID)
		}()
	}
	log.Info("node subscribed", "last_applied_revision", sub.GetLastAppliedRevision(), "stream", streamID)

	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receive(ctx, stream, rec, streamID, edge) }()
	// The certificate was checked when the stream opened; check again now
	// and then, so that revoking a member, or its certificate expiring,
	// cuts it off.
	recheck := time.NewTicker(c.cfg.TokenRecheck)
	defer recheck.Stop()
	renewed := c.sessions.leaseRenewed()

	pos := int64(-1) // -1: send a snapshot
	for {
		var next <-chan struct{}
		if pos < 0 {
			snap, ok := c.cache.Snapshot()
			if !ok {
				next, _ = c.cache.Ready()
			} else {
				if err := stream.Send(forMember(withSeeds(snap, c.gossipSeeds(ctx, name)), edge)); err != nil {
					return err
				}
				pos = snap.GetRevision()
				log.Debug("sent snapshot", "revision", pos, "domains", len(snap.GetDomains()))
				continue
			}
		} else {
			changes, nxt, ok := c.cache.Since(pos)
			if !ok {
				log.Info("node is behind the change log; sending a snapshot", "position", pos)
				pos = -1
				continue
			}
			for _, ch := range changes {
				if err := stream.Send(forMember(ch, edge)); err != nil {
					return err
				}
				pos = ch.GetRevision()
			}
			next = nxt
		}
		select {
		case <-next:
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-c.stopping:
			return apierr.Unavailable(apierr.ReasonShuttingDown, "the controller is shutting down; reconnect to another")
		case <-renewed:
			renewed = c.sessions.leaseRenewed()
			if edge {
				c.markConnected(ctx, rec, streamID)
			}
		case <-recheck.C:
			if err := c.stillValid(ctx, p); err != nil {
				log.Info("closing the stream: the member's certificate is no longer valid", "reason", apierr.Reason(err))
				return err
			}
		}
	}
}

// receive handles ACKs and NACKs until the stream ends.
func (s *configService) receive(ctx context.Context, stream outpostv1.ConfigDiscoveryService_StreamConfigServer, rec *nodeRecord, streamID string, edge bool) error {
	c := s.c
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		switch m := msg.GetKind().(type) {
		case *outpostv1.StreamConfigRequest_Ack:
			c.metrics.acks.WithLabelValues("ack").Inc()
			rec.update(func(r *storagev1.NodeRecord) {
				r.AppliedRevision = m.Ack.GetRevision()
				r.LastSeen = c.timestamp()
			})
		case *outpostv1.StreamConfigRequest_Nack:
			c.metrics.acks.WithLabelValues("nack").Inc()
			c.log.Warn("node refused a config", "node", rec.rec.GetInfo().GetName(), "revision", m.Nack.GetRevision(), "error", m.Nack.GetError())
			rec.update(func(r *storagev1.NodeRecord) {
				r.LastNack = &outpostv1.Nack{Revision: m.Nack.GetRevision(), Error: m.Nack.GetError(), Time: timestamppb.New(c.cfg.Now())}
				r.LastSeen = c.timestamp()
			})
		case *outpostv1.StreamConfigRequest_TaskReport:
			c.recordTaskReport(ctx, rec.rec.GetInfo().GetName(), m.TaskReport)
		default:
			return apierr.InvalidArgument(apierr.ReasonInvalidArgument, "unexpected message on the config stream")
		}
		if edge {
			c.markConnected(ctx, rec, streamID)
		}
	}
}

// recordTaskReport keeps a node's last report on a task, with a plain put
// as node records are: only the stream of that node writes it. Reports on
// unknown (or expired) tasks are dropped. Failures are logged: the node
// reports again.
func (c *Controller) recordTaskReport(ctx context.Context, node string, r *outpostv1.TaskReport) {
	id := r.GetTaskId()
	if !taskIDPattern.MatchString(id) {
		c.log.Warn("node reported on a malformed task ID", "node", node, "task_id", id)
		return
	}
	if _, found, err := c.store.GetRaw(ctx, store.TaskKey(id)); err != nil {
		c.log.Warn("cannot record a task report", "node", node, "task_id", id, "err", err)
		return
	} else if !found {
		c.log.Debug("node reported on an unknown task", "node", node, "task_id", id)
		return
	}
	b, err := store.Encode(&storagev1.TaskProgress{Report: r, ReportTime: c.timestamp()})
	if err == nil {
		_, err = c.cli.Put(ctx, store.TaskProgressKey(id, node), string(b))
	}
	if err != nil {
		c.log.Warn("cannot record a task report", "node", node, "task_id", id, "err", err)
	}
}

// markConnected writes the node's record and session. Failures (etcd down)
// are logged: the stream keeps serving from the cache regardless.
func (c *Controller) markConnected(ctx context.Context, rec *nodeRecord, streamID string) {
	rec.sessMu.Lock()
	defer rec.sessMu.Unlock()
	if rec.closed {
		return
	}
	r := rec.update(func(*storagev1.NodeRecord) {})
	name := r.GetInfo().GetName()
	if err := c.sessions.report(ctx, r); err != nil {
		c.log.Warn("cannot record node status", "node", name, "err", err)
		return
	}
	if err := c.sessions.open(ctx, name, streamID); err != nil {
		c.log.Warn("cannot record node session", "node", name, "err", err)
	}
}

// forMember is what a member receives of a config message: edge nodes get
// all of it; schedulers, which route by domain and never terminate TLS,
// get it without the certificates (private keys) and ACME challenge
// responses, so that a scheduler host holds no key of any domain.
func forMember(m *outpostv1.StreamConfigResponse, edge bool) *outpostv1.StreamConfigResponse {
	if edge || len(m.GetCertificates()) == 0 && len(m.GetAcmeChallenges()) == 0 {
		return m
	}
	out := &outpostv1.StreamConfigResponse{}
	dst := out.ProtoReflect()
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch fd.Name() {
		case "certificates", "acme_challenges":
		default:
			dst.Set(fd, v) // shared, not copied: messages are never modified once built
		}
		return true
	})
	return out
}
