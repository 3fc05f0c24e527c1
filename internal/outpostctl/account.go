package outpostctl

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newAccountCommand() *cobra.Command {
	cmd := newGroup("account", "Create accounts and set their quotas",
		`An account owns domains and certificates. Creating and listing accounts
and setting quotas needs an operator token; an account's own tokens may read it.`,
		a.newAccountCreateCommand(),
		a.newAccountGetCommand(),
		a.newAccountListCommand(),
		a.newAccountQuotaCommand(),
	)
	cmd.Aliases = []string{"accounts"}
	return cmd
}

func (a *app) newAccountCreateCommand() *cobra.Command {
	var displayName string
	var quota uint32
	cmd := &cobra.Command{
		Use:   "create ID [--display-name TEXT] [--domain-quota N]",
		Short: "Create an account",
		Long: `Create an account. ID is lower-case letters, digits and '-', 1-63
characters. Then give it a token with 'token create --account ID --role admin'.`,
		Example: `  outpostctl account create acme --display-name "ACME Corp" --domain-quota 100
  outpostctl token create --account acme --role admin --description "ACME admin"`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.accounts.CreateAccount(ctx, &outpostv1.CreateAccountRequest{
				Id: args[0], DisplayName: displayName, DomainQuota: quota,
			})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeAccount(w, resp.GetAccount()) })
		},
	}
	cmd.Flags().StringVar(&displayName, "display-name", "", "a name for people")
	cmd.Flags().Uint32Var(&quota, "domain-quota", 0, "most domains the account may have (default: the controller's, 50)")
	return apiCommand(cmd)
}

func (a *app) newAccountGetCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "get ID",
		Short:   "Show an account",
		Example: "  outpostctl account get acme",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.accounts.GetAccount(ctx, &outpostv1.GetAccountRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeAccount(w, resp.GetAccount()) })
		},
	})
}

func (a *app) newAccountListCommand() *cobra.Command {
	var pageSize int32
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List accounts",
		Long:    "List every account in ID order, every page of them.",
		Example: "  outpostctl account list",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			accounts, err := listAll(cmd.Context(), a.flags.timeout, func(ctx context.Context, token string) ([]*outpostv1.Account, string, error) {
				resp, err := a.api.accounts.ListAccounts(ctx, &outpostv1.ListAccountsRequest{PageSize: pageSize, PageToken: token})
				return resp.GetAccounts(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			resp := &outpostv1.ListAccountsResponse{Accounts: accounts}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(resp.GetAccounts()) == 0 {
					_, err := fmt.Fprintln(w, "No accounts. Create one with 'outpostctl account create ID'.")
					return err
				}
				t := newTable(w, "ID", "DISPLAY-NAME", "DOMAINS", "QUOTA", "CREATED")
				for _, ac := range resp.GetAccounts() {
					t.row(ac.GetId(), ac.GetDisplayName(), strconv.FormatUint(uint64(ac.GetDomainCount()), 10),
						quotaString(ac.GetDomainQuota()), timestamp(ac.GetCreateTime()))
				}
				return t.flush()
			})
		},
	}
	pageSizeFlag(cmd, &pageSize)
	return apiCommand(cmd)
}

// contentQuotaFlags are the flags of 'account quota' that set content quotas,
// with the ContentQuota fields they set.
var contentQuotaFlags = []struct {
	flag, path, usage string
	set               func(*outpostv1.ContentQuota, uint32)
}{
	{"refresh-urls", "content_quota.refresh_urls", "refresh URLs per day (file and ignore-params entries)",
		func(q *outpostv1.ContentQuota, n uint32) { q.RefreshUrls = n }},
	{"refresh-dirs", "content_quota.refresh_directories", "refresh directories per day",
		func(q *outpostv1.ContentQuota, n uint32) { q.RefreshDirectories = n }},
	{"refresh-regexes", "content_quota.refresh_regexes", "refresh regular expressions per day",
		func(q *outpostv1.ContentQuota, n uint32) { q.RefreshRegexes = n }},
	{"prefetch-urls", "content_quota.prefetch_urls", "prefetch URLs per day",
		func(q *outpostv1.ContentQuota, n uint32) { q.PrefetchUrls = n }},
}

func (a *app) newAccountQuotaCommand() *cobra.Command {
	values := make([]uint32, len(contentQuotaFlags))
	cmd := &cobra.Command{
		Use:   "quota ID [N] [--refresh-urls N] [--refresh-dirs N] [--refresh-regexes N] [--prefetch-urls N]",
		Short: "Set an account's domain and content quotas",
		Long: `Set an account's quotas; only those given change. N is the most domains the
account may have. The flags set its daily (UTC) refresh and prefetch quotas.
0 restores the controller's default (50 domains; per day 10,000 refresh URLs,
100 directories, 20 regular expressions and 1,000 prefetch URLs, unless the
controller is configured otherwise). Needs an operator token.`,
		Example: `  outpostctl account quota acme 200
  outpostctl account quota acme --refresh-urls 50000 --prefetch-urls 5000
  outpostctl account quota acme --refresh-dirs 0`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return usageErrorf("missing ID")
			case len(args) > 2:
				return usageErrorf("unexpected argument %q", args[2])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &outpostv1.SetAccountQuotaRequest{Id: args[0], ContentQuota: &outpostv1.ContentQuota{}, UpdateMask: &fieldmaskpb.FieldMask{}}
			if len(args) == 2 {
				n, err := strconv.ParseUint(args[1], 10, 32)
				if err != nil {
					return usageErrorf("invalid quota %q: want a whole number (0 for the default)", args[1])
				}
				req.DomainQuota = uint32(n)
				req.UpdateMask.Paths = append(req.UpdateMask.Paths, "domain_quota")
			}
			for i, f := range contentQuotaFlags {
				if cmd.Flags().Changed(f.flag) {
					f.set(req.ContentQuota, values[i])
					req.UpdateMask.Paths = append(req.UpdateMask.Paths, f.path)
				}
			}
			if len(req.UpdateMask.Paths) == 0 {
				return usageErrorf("give the domain quota N or a content quota flag")
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.accounts.SetAccountQuota(ctx, req)
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeAccount(w, resp.GetAccount()) })
		},
	}
	for i, f := range contentQuotaFlags {
		cmd.Flags().Uint32Var(&values[i], f.flag, 0, "`N` "+f.usage+"; 0 for the default")
	}
	return apiCommand(cmd)
}

func writeAccount(w io.Writer, ac *outpostv1.Account) error {
	v := newDetails(w)
	v.field("ID", ac.GetId())
	v.field("Display name", ac.GetDisplayName())
	v.field("Domains", fmt.Sprintf("%d of %s", ac.GetDomainCount(), quotaString(ac.GetDomainQuota())))
	if q := ac.GetContentQuota(); q != nil {
		v.field("Daily refresh quota", fmt.Sprintf("%d URLs, %d directories, %d regular expressions",
			q.GetRefreshUrls(), q.GetRefreshDirectories(), q.GetRefreshRegexes()))
		v.field("Daily prefetch quota", fmt.Sprintf("%d URLs", q.GetPrefetchUrls()))
	}
	v.field("Created", timestamp(ac.GetCreateTime()))
	return v.flush()
}

func quotaString(q uint32) string {
	if q == 0 {
		return "default"
	}
	return strconv.FormatUint(uint64(q), 10)
}
