package outpostctl

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

const day = 24 * time.Hour

func (a *app) newCacheCommand() *cobra.Command {
	return newGroup("cache", "Set how edge nodes cache a domain's content",
		`Give a domain's paths cache TTLs with rules, and choose whether the query
string is part of the cache key. An origin's Cache-Control max-age, s-maxage
or Expires wins over the rules; no-store, no-cache and private always win.`,
		newGroup("rule", "Add, list and remove cache rules",
			`A cache rule gives the paths it matches a TTL: how long edge nodes keep a
response before asking the origin again. A rule matches a path prefix (such
as /static/, subdirectories included) or a file extension (such as jpg). The
first extension rule that matches wins, else the longest matching prefix.`,
			a.newCacheRuleAddCommand(),
			a.newCacheRuleListCommand(),
			a.newCacheRuleRemoveCommand(),
		),
		a.newCacheKeyCommand(),
		a.newCacheAutoRefreshCommand(),
	)
}

func (a *app) newCacheRuleAddCommand() *cobra.Command {
	var prefix, ext string
	var ttl ttlValue
	cmd := &cobra.Command{
		Use:   "add NAME (--path-prefix PREFIX | --ext EXT) --ttl DURATION",
		Short: "Add a cache rule to a domain",
		Long: `Add a cache rule to a domain. --ttl is a duration such as 30s, 10m, 12h or
7d (days), from 0 (matching responses are not cached) to 365d. A domain has
at most 64 rules.`,
		Example: `  outpostctl cache rule add cdn.example.com --path-prefix /static/ --ttl 7d
  outpostctl cache rule add cdn.example.com --ext jpg --ttl 30d
  outpostctl cache rule add cdn.example.com --path-prefix /api/ --ttl 0`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &outpostv1.AddCacheRuleRequest{Domain: args[0], Ttl: durationpb.New(ttl.d)}
			if cmd.Flags().Changed("path-prefix") {
				req.Match = &outpostv1.AddCacheRuleRequest_PathPrefix{PathPrefix: prefix}
			} else {
				req.Match = &outpostv1.AddCacheRuleRequest_Extension{Extension: ext}
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.cache.AddCacheRule(ctx, req)
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				r := resp.GetRule()
				if _, err := fmt.Fprintf(w, "Added cache rule %s to %s: %s, TTL %s.\n\n", r.GetId(), args[0], ruleMatch(r), formatTTL(r.GetTtl().AsDuration())); err != nil {
					return err
				}
				return writeCacheSettings(w, resp.GetSettings())
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "path-prefix", "", "match paths starting with `PREFIX` (begins with /)")
	cmd.Flags().StringVar(&ext, "ext", "", "match files with this extension `EXT`, such as jpg")
	cmd.Flags().Var(&ttl, "ttl", "how long matching responses are cached, such as 10m, 12h or 7d")
	cmd.MarkFlagsMutuallyExclusive("path-prefix", "ext")
	cmd.MarkFlagsOneRequired("path-prefix", "ext")
	_ = cmd.MarkFlagRequired("ttl")
	return apiCommand(cmd)
}

func (a *app) newCacheRuleListCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "list NAME",
		Aliases: []string{"ls"},
		Short:   "List a domain's cache rules and cache key options",
		Example: "  outpostctl cache rule list cdn.example.com\n  outpostctl cache rule list cdn.example.com -o json",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.cache.ListCacheRules(ctx, &outpostv1.ListCacheRulesRequest{Domain: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeCacheSettings(w, resp.GetSettings()) })
		},
	})
}

func (a *app) newCacheRuleRemoveCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "remove NAME ID",
		Aliases: []string{"rm", "delete"},
		Short:   "Remove a cache rule from a domain",
		Example: "  outpostctl cache rule remove cdn.example.com rule-1a2b3c4d",
		Args:    exactArgs("NAME", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.cache.RemoveCacheRule(ctx, &outpostv1.RemoveCacheRuleRequest{Domain: args[0], RuleId: args[1]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Removed cache rule %s from %s.\n", args[1], args[0])
				return err
			})
		},
	})
}

func (a *app) newCacheKeyCommand() *cobra.Command {
	var ignore, keep bool
	cmd := &cobra.Command{
		Use:   "key NAME (--ignore-query | --keep-query)",
		Short: "Choose whether the query string is part of the cache key",
		Long: `With --ignore-query, edge nodes cache one copy of a path whatever its query
string (/a.js?v=1 and /a.js?v=2 share it); with --keep-query, the default,
each query string is cached separately.`,
		Example: "  outpostctl cache key cdn.example.com --ignore-query\n  outpostctl cache key cdn.example.com --keep-query",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.cache.SetCacheKeyOptions(ctx, &outpostv1.SetCacheKeyOptionsRequest{Domain: args[0], IgnoreQuery: ignore})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Cache key of %s: %s.\n", args[0], cacheKeySummary(resp.GetSettings()))
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&ignore, "ignore-query", false, "leave the query string out of the cache key")
	cmd.Flags().BoolVar(&keep, "keep-query", false, "cache each query string separately (the default)")
	cmd.MarkFlagsMutuallyExclusive("ignore-query", "keep-query")
	cmd.MarkFlagsOneRequired("ignore-query", "keep-query")
	return apiCommand(cmd)
}

func (a *app) newCacheAutoRefreshCommand() *cobra.Command {
	var on, off bool
	cmd := &cobra.Command{
		Use:   "auto-refresh NAME (--on | --off)",
		Short: "Refresh objects automatically when they change in the origin bucket",
		Long: `Automatic cache update: with --on, the object-storage bucket behind the
domain (an oss origin; not for wildcard domains) sends its S3 event
notifications to the controller, and every object created, overwritten or
deleted in the bucket is refreshed on the edge nodes. Each notification
becomes a refresh task that counts against the account's daily refresh quota.

--on prints a secret, once, and the endpoint path. Configure the bucket's
webhook (event notifications for ObjectCreated:* and ObjectRemoved:*) to POST
to that path on the controller's bucket-events address (controller flag
-bucket-events-addr) with the header "Authorization: Bearer SECRET". Running
--on again replaces the secret; --off turns the feature off and the secret
stops working.`,
		Example: `  outpostctl cache auto-refresh cdn.example.com --on
  outpostctl cache auto-refresh cdn.example.com --off

  # MinIO: point a webhook target at the controller and subscribe the bucket.
  mc admin config set myminio notify_webhook:outpost \
      endpoint=http://controller.example.com:7080/v1/bucket-events/cdn.example.com auth_token=SECRET
  mc event add myminio/assets arn:minio:sqs::outpost:webhook --event put,delete`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			if off {
				resp, err := a.api.cache.DisableAutoRefresh(ctx, &outpostv1.DisableAutoRefreshRequest{Domain: args[0]})
				if err != nil {
					return err
				}
				return a.render(cmd, resp, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "Automatic cache update of %s is off; its secret no longer works.\n"+
						"Remove the webhook from the bucket's event notifications.\n", args[0])
					return err
				})
			}
			resp, err := a.api.cache.EnableAutoRefresh(ctx, &outpostv1.EnableAutoRefreshRequest{Domain: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Automatic cache update of %s is on.\n\n"+
					"Endpoint:  POST %s\n"+
					"           on the controller's bucket-events address (controller flag -bucket-events-addr)\n"+
					"Secret:\n\n    %s\n\n"+
					"Store the secret now: it will not be shown again, and any earlier secret no\n"+
					"longer works. Configure the bucket's webhook (event notifications for\n"+
					"ObjectCreated:* and ObjectRemoved:*) to POST to the endpoint with the header\n"+
					"\"Authorization: Bearer <secret>\".\n",
					args[0], resp.GetEndpointPath(), resp.GetSecret())
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&on, "on", false, "turn automatic cache update on, or rotate its secret")
	cmd.Flags().BoolVar(&off, "off", false, "turn automatic cache update off")
	cmd.MarkFlagsMutuallyExclusive("on", "off")
	cmd.MarkFlagsOneRequired("on", "off")
	return apiCommand(cmd)
}

func writeCacheSettings(w io.Writer, s *outpostv1.CacheSettings) error {
	if _, err := fmt.Fprintf(w, "Cache key: %s.\n", cacheKeySummary(s)); err != nil {
		return err
	}
	auto := "off"
	if s.GetAutoRefresh() {
		auto = "on (objects changed in the origin bucket are refreshed)"
	}
	if _, err := fmt.Fprintf(w, "Automatic cache update: %s.\n", auto); err != nil {
		return err
	}
	if len(s.GetRules()) == 0 {
		_, err := fmt.Fprintln(w, "No cache rules. Add one with 'outpostctl cache rule add NAME --ext jpg --ttl 7d'.")
		return err
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	t := newTable(w, "ID", "MATCH", "TTL")
	for _, r := range s.GetRules() {
		t.row(r.GetId(), ruleMatch(r), formatTTL(r.GetTtl().AsDuration()))
	}
	return t.flush()
}

func cacheKeySummary(s *outpostv1.CacheSettings) string {
	if s.GetIgnoreQuery() {
		return "query string ignored"
	}
	return "query string included"
}

func ruleMatch(r *outpostv1.CacheRule) string {
	switch m := r.GetMatch().(type) {
	case *outpostv1.CacheRule_PathPrefix:
		return "path prefix " + m.PathPrefix
	case *outpostv1.CacheRule_Extension:
		return "extension " + m.Extension
	}
	return "-"
}

// formatTTL renders a TTL in whole days when it is one.
func formatTTL(d time.Duration) string {
	switch {
	case d == 0:
		return "0 (not cached)"
	case d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// parseTTL parses a Go duration, optionally starting with whole days:
// "7d", "1d12h", "90m".
func parseTTL(s string) (time.Duration, error) {
	var days time.Duration
	if before, after, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(before, 10, 16)
		if err != nil {
			return 0, errors.New("want a duration such as 30s, 10m, 12h or 7d")
		}
		days = time.Duration(n) * day
		if after == "" {
			return days, nil
		}
		if after[0] < '0' || after[0] > '9' {
			return 0, errors.New("want a duration such as 30s, 10m, 12h or 7d")
		}
		s = after
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration such as 30s, 10m, 12h or 7d")
	}
	return days + d, nil
}

// ttlValue is the --ttl flag.
type ttlValue struct{ d time.Duration }

func (v *ttlValue) Set(s string) error {
	d, err := parseTTL(s)
	if err != nil {
		return err
	}
	v.d = d
	return nil
}

func (v *ttlValue) String() string {
	if v.d == 0 {
		return ""
	}
	return formatTTL(v.d)
}

func (v *ttlValue) Type() string { return "DURATION" }
