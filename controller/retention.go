package controller

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-cdn/outpost/controller/store"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
)

const (
	// retentionBatch is how many tasks one retention transaction deletes:
	// up to five deletes each, within etcd's default of 128 operations.
	retentionBatch = 20
	// retentionAttempts bounds the retries of a batch that lost a race
	// with another controller (or a task being read as finished).
	retentionAttempts = 5
)

// runRetention deletes expired content tasks at start and then every
// RetentionInterval until ctx ends. Several controllers may run it at once:
// the deletes are idempotent and the purge floor is raised in guarded
// transactions.
func (c *Controller) runRetention(ctx context.Context) {
	tick := time.NewTicker(c.cfg.RetentionInterval)
	defer tick.Stop()
	for {
		c.retain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// retain runs one retention pass.
func (c *Controller) retain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cutoff := c.cfg.Now().Add(-c.cfg.TaskRetention)
	if err := c.expireTasks(ctx, cutoff); err != nil && ctx.Err() == nil {
		c.log.Warn("task retention", "err", err)
	}
	if err := c.expireQuotaUsage(ctx, cutoff); err != nil && ctx.Err() == nil {
		c.log.Warn("quota usage retention", "err", err)
	}
	c.pruneMemberCerts(ctx)
}

// expireTasks deletes the tasks created before cutoff with everything
// keyed by their IDs: account index, progress, purge and prefetch. Task IDs
// start with their creation time, so each of these prefixes is scanned up to
// the cutoff's ID, which also sweeps leftovers (a report that arrived after
// its task was deleted).
func (c *Controller) expireTasks(ctx context.Context, cutoff time.Time) error {
	bound := taskIDBound(cutoff)
	var last []string
	for {
		ids := map[string]bool{}
		for _, prefix := range []string{store.TasksPrefix(), store.PurgesPrefix(), store.PrefetchesPrefix(), store.TaskProgressesPrefix()} {
			kvs, err := c.store.RangeBelow(ctx, prefix+"task-", prefix+bound, retentionBatch)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				id, _, _ := strings.Cut(strings.TrimPrefix(kv.Key, prefix), "/")
				if taskIDPattern.MatchString(id) {
					ids[id] = true
				}
			}
		}
		if len(ids) == 0 {
			return nil
		}
		batch := make([]string, 0, len(ids))
		for id := range ids {
			batch = append(batch, id)
		}
		slices.Sort(batch)
		if len(batch) > retentionBatch {
			batch = batch[:retentionBatch]
		}
		if slices.Equal(batch, last) {
			return errors.New("retention made no progress: keys under a task ID were not deleted")
		}
		last = batch
		if err := c.expireBatch(ctx, batch); err != nil {
			return err
		}
	}
}

// expireBatch deletes a batch of tasks in one transaction, raising the
// purge floor to the revision of the newest purge it deletes.
func (c *Controller) expireBatch(ctx context.Context, ids []string) error {
	for attempt := 1; ; attempt++ {
		t := c.store.Begin()
		raw, _, err := t.GetRaw(ctx, store.PurgeFloorKey())
		if err != nil {
			return err
		}
		floor, _ := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		newFloor := floor
		purges := 0
		for _, id := range ids {
			st := &storagev1.StoredTask{}
			found, err := t.Get(ctx, store.TaskKey(id), st)
			if err != nil {
				return err
			}
			if found {
				t.Delete(store.TaskKey(id))
				if acct := st.GetTask().GetAccount(); acct != "" {
					t.Delete(store.AccountTaskKey(acct, id))
				}
			}
			if found, err := t.Guard(ctx, store.PurgeKey(id)); err != nil {
				return err
			} else if found {
				newFloor = max(newFloor, t.ModRevision(store.PurgeKey(id)))
				t.Delete(store.PurgeKey(id))
				purges++
			}
			t.Delete(store.PrefetchKey(id))
			t.DeletePrefix(store.TaskProgressPrefix(id))
		}
		if newFloor > floor {
			t.PutRaw(store.PurgeFloorKey(), strconv.FormatInt(newFloor, 10))
		}
		_, err = t.Commit(ctx)
		if errors.Is(err, store.ErrConflict) && attempt < retentionAttempts {
			continue
		}
		if err != nil {
			return err
		}
		c.log.Info("deleted expired content tasks", "tasks", len(ids), "purges", purges, "purge_floor", newFloor)
		return nil
	}
}

// expireQuotaUsage deletes the quota usage of days that ended before
// cutoff. The current day's record is never deleted, whatever the
// retention.
func (c *Controller) expireQuotaUsage(ctx context.Context, cutoff time.Time) error {
	kvs, _, err := c.store.Range(ctx, store.QuotaUsagesPrefix(), "", 0)
	if err != nil {
		return err
	}
	var expired []string
	for _, kv := range kvs {
		day, err := time.Parse(quotaDayLayout, store.LastSegment(kv.Key))
		if err != nil {
			continue
		}
		if !day.Add(24 * time.Hour).After(cutoff) {
			expired = append(expired, kv.Key)
		}
	}
	for len(expired) > 0 {
		n := min(len(expired), 100)
		t := c.store.Begin()
		for _, k := range expired[:n] {
			t.Delete(k)
		}
		if _, err := t.Commit(ctx); err != nil {
			return err
		}
		expired = expired[n:]
	}
	return nil
}
