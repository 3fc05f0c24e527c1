package outpostctl

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newDomainCommand() *cobra.Command {
	return newGroup("domain", "Add, list and remove accelerated domains",
		`An accelerated domain is a name your users request, such as cdn.example.com
or *.example.com, served by the edge nodes from one or more origins. Each
domain gets a CNAME: point the domain's DNS record at it to send traffic to
the CDN.`,
		a.newDomainAddCommand(),
		a.newDomainGetCommand(),
		a.newDomainListCommand(),
		a.newDomainRemoveCommand(),
		a.newDomainEnableCommand(),
		a.newDomainDisableCommand(),
	)
}

// originSpecHelp explains the --origin syntax in Long texts.
const originSpecHelp = `Each --origin is ` + originSpecSyntax + `:
  TYPE      ip, domain (a site's host name), oss (an object-storage bucket
            host name) or fc (a function-compute host name)
  ADDRESS   an IP address for ip, else a host name; IPv6 in brackets
  PORT      80 or 443; 80 when left out
  backup    used only when every primary origin fails (default primary)
  weight=N  share among origins of the same priority, 1-100 (default 10)`

func (a *app) newDomainAddCommand() *cobra.Command {
	var origins originsFlag
	business := newEnumFlag(outpostv1.BusinessType_BUSINESS_TYPE_WEB)
	scope := newEnumFlag(outpostv1.Scope_SCOPE_GLOBAL)
	cmd := &cobra.Command{
		Use:   "add NAME --origin SPEC [--origin SPEC ...]",
		Short: "Add an accelerated domain",
		Long: `Add an accelerated domain to your account and print the CNAME it was given.
NAME is a host name such as cdn.example.com, or a wildcard such as
*.example.com (quote it for the shell).

` + originSpecHelp,
		Example: `  outpostctl domain add cdn.example.com --origin ip:203.0.113.10
  outpostctl domain add img.example.com --origin domain:origin.example.com:443,weight=20 \
      --origin oss:bucket.oss.example.com:443,backup --business-type web
  outpostctl domain add '*.example.com' --origin 'ip:[2001:db8::1]:443' --scope global`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{
				Name:         args[0],
				Origins:      origins.origins,
				BusinessType: business.value,
				Scope:        scope.value,
			})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				d := resp.GetDomain()
				if err := writeDomain(w, d); err != nil {
					return err
				}
				_, err := fmt.Fprintf(w, "\nNext: point a CNAME record for %s at %s.\n", d.GetName(), d.GetCname())
				return err
			})
		},
	}
	cmd.Flags().Var(&origins, "origin", "an origin, "+originSpecSyntax+" (repeatable)")
	cmd.Flags().Var(business, "business-type", "what the domain serves")
	cmd.Flags().Var(scope, "scope", "where the domain is served from")
	_ = cmd.MarkFlagRequired("origin")
	_ = cmd.RegisterFlagCompletionFunc("business-type", fixedCompletion(business.choices()...))
	_ = cmd.RegisterFlagCompletionFunc("scope", fixedCompletion(scope.choices()...))
	_ = cmd.RegisterFlagCompletionFunc("origin", cobra.FixedCompletions([]string{"ip:", "domain:", "oss:", "fc:"}, cobra.ShellCompDirectiveNoSpace))
	return apiCommand(cmd)
}

func (a *app) newDomainGetCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "get NAME",
		Short:   "Show an accelerated domain",
		Long:    "Show a domain's CNAME, status, origins, HTTPS and origin settings.",
		Example: "  outpostctl domain get cdn.example.com\n  outpostctl domain get cdn.example.com -o json",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeDomain(w, resp.GetDomain()) })
		},
	})
}

func (a *app) newDomainListCommand() *cobra.Command {
	var pageSize int32
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List accelerated domains",
		Long: `List the domains of your account in name order. Every page is fetched; with
-o json the output is one ListDomainsResponse holding all of them.`,
		Example: "  outpostctl domain list\n  outpostctl domain list -o json | jq -r '.domains[] | [.name, .cname] | @tsv'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			domains, err := listAll(cmd.Context(), a.flags.timeout, func(ctx context.Context, token string) ([]*outpostv1.Domain, string, error) {
				resp, err := a.api.domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{PageSize: pageSize, PageToken: token})
				return resp.GetDomains(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			resp := &outpostv1.ListDomainsResponse{Domains: domains}
			return a.render(cmd, resp, func(w io.Writer) error { return writeDomainTable(w, domains) })
		},
	}
	pageSizeFlag(cmd, &pageSize)
	return apiCommand(cmd)
}

func (a *app) newDomainRemoveCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "remove NAME",
		Aliases: []string{"rm", "delete"},
		Short:   "Remove an accelerated domain",
		Long: `Remove a domain and its configuration; edge nodes stop serving it. A
certificate uploaded inline with 'https enable' goes with it. To stop serving
a domain but keep its configuration, use 'domain disable'.`,
		Example: "  outpostctl domain remove cdn.example.com",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.domains.DeleteDomain(ctx, &outpostv1.DeleteDomainRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Removed domain %s.\n", args[0])
				return err
			})
		},
	})
}

func (a *app) newDomainEnableCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "enable NAME",
		Short:   "Put a disabled domain back in service",
		Example: "  outpostctl domain enable cdn.example.com",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.domains.EnableDomain(ctx, &outpostv1.EnableDomainRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeDomainStatus(w, resp.GetDomain()) })
		},
	})
}

func (a *app) newDomainDisableCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:   "disable NAME",
		Short: "Take a domain offline, keeping its configuration",
		Long: `Take a domain offline: edge nodes stop serving it, but its origins, HTTPS
and other settings are kept for 'domain enable'.`,
		Example: "  outpostctl domain disable cdn.example.com",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.domains.DisableDomain(ctx, &outpostv1.DisableDomainRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeDomainStatus(w, resp.GetDomain()) })
		},
	})
}

// writeDomain writes the `domain get` view of a domain.
func writeDomain(w io.Writer, d *outpostv1.Domain) error {
	v := newDetails(w)
	v.field("Name", d.GetName())
	v.field("CNAME", d.GetCname())
	v.field("Status", enumName(d.GetStatus()))
	v.field("Business type", enumName(d.GetBusinessType()))
	v.field("Scope", enumName(d.GetScope()))
	v.field("Origins", originSpecs(d.GetOrigins())...)
	v.field("HTTPS", httpsSummary(d.GetHttps()))
	writeOriginSettings(v, d.GetOriginSettings())
	v.field("Account", d.GetAccount())
	v.field("Created", timestamp(d.GetCreateTime()))
	v.field("Updated", timestamp(d.GetUpdateTime()))
	v.field("Revision", revision(d.GetRevision()))
	return v.flush()
}

// writeDomainTable writes the `domain list` table.
func writeDomainTable(w io.Writer, domains []*outpostv1.Domain) error {
	if len(domains) == 0 {
		_, err := fmt.Fprintln(w, "No domains. Add one with 'outpostctl domain add NAME --origin SPEC'.")
		return err
	}
	t := newTable(w, "NAME", "STATUS", "CNAME", "BUSINESS", "SCOPE", "HTTPS", "ORIGINS")
	for _, d := range domains {
		https := "off"
		if d.GetHttps().GetEnabled() {
			https = "on"
		}
		t.row(d.GetName(), enumName(d.GetStatus()), d.GetCname(), enumName(d.GetBusinessType()),
			enumName(d.GetScope()), https, strings.Join(originSpecs(d.GetOrigins()), " "))
	}
	return t.flush()
}

// writeDomainStatus is the one line `domain enable` and `domain disable` print.
func writeDomainStatus(w io.Writer, d *outpostv1.Domain) error {
	_, err := fmt.Fprintf(w, "Domain %s is %s.\n", d.GetName(), enumName(d.GetStatus()))
	return err
}

func originSpecs(origins []*outpostv1.Origin) []string {
	specs := make([]string, len(origins))
	for i, o := range origins {
		specs[i] = FormatOrigin(o)
	}
	return specs
}

func revision(r int64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprint(r)
}
