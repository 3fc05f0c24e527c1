package outpostctl

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newOriginCommand() *cobra.Command {
	return newGroup("origin", "Set how edge nodes reach a domain's origins",
		`Show and change a domain's origin servers and how edge nodes talk to them:
the SNI and Host header they send, the scheme they use and how they check the
origin's certificate.`,
		a.newOriginGetCommand(),
		a.newOriginSetCommand(),
		a.newOriginSNICommand(),
		a.newOriginHostCommand(),
		a.newOriginProtocolCommand(),
		a.newOriginVerifyCommand(),
	)
}

func (a *app) newOriginGetCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "get NAME",
		Short:   "Show a domain's origins and origin settings",
		Example: "  outpostctl origin get cdn.example.com",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.origins.GetOriginSettings(ctx, &outpostv1.GetOriginSettingsRequest{Domain: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				v := newDetails(w)
				v.field("Origins", originSpecs(resp.GetOrigins())...)
				writeOriginSettings(v, resp.GetSettings())
				return v.flush()
			})
		},
	})
}

func (a *app) newOriginSetCommand() *cobra.Command {
	var origins originsFlag
	cmd := &cobra.Command{
		Use:   "set NAME --origin SPEC [--origin SPEC ...]",
		Short: "Replace a domain's origins",
		Long:  "Replace the whole origin list of a domain.\n\n" + originSpecHelp,
		Example: `  outpostctl origin set cdn.example.com --origin ip:203.0.113.10 --origin ip:203.0.113.11,backup
  outpostctl origin set cdn.example.com --origin domain:origin.example.com:443,weight=20`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.origins.SetOrigins(ctx, &outpostv1.SetOriginsRequest{Domain: args[0], Origins: origins.origins})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				v := newDetails(w)
				v.field("Origins", originSpecs(resp.GetOrigins())...)
				return v.flush()
			})
		},
	}
	cmd.Flags().Var(&origins, "origin", "an origin, "+originSpecSyntax+" (repeatable)")
	_ = cmd.MarkFlagRequired("origin")
	_ = cmd.RegisterFlagCompletionFunc("origin", cobra.FixedCompletions([]string{"ip:", "domain:", "oss:", "fc:"}, cobra.ShellCompDirectiveNoSpace))
	return apiCommand(cmd)
}

func (a *app) newOriginSNICommand() *cobra.Command {
	var value string
	var disable bool
	cmd := &cobra.Command{
		Use:   "sni NAME (--value HOST | --disable)",
		Short: "Set the SNI sent to a domain's origins",
		Long: `Make edge nodes send HOST as the server name (SNI) when they connect to the
origin over HTTPS, so that an origin serving many sites on one IP address
returns the right certificate; or stop sending one. Object-storage (oss)
origins need no SNI.`,
		Example: "  outpostctl origin sni cdn.example.com --value origin.example.com\n  outpostctl origin sni cdn.example.com --disable",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &outpostv1.SetOriginSniRequest{Domain: args[0], Enabled: !disable, Value: value}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.origins.SetOriginSni(ctx, req)
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeOriginSettingsView(w, resp.GetSettings()) })
		},
	}
	cmd.Flags().StringVar(&value, "value", "", "the server `HOST` name to send")
	cmd.Flags().BoolVar(&disable, "disable", false, "send no SNI")
	cmd.MarkFlagsMutuallyExclusive("value", "disable")
	cmd.MarkFlagsOneRequired("value", "disable")
	return apiCommand(cmd)
}

func (a *app) newOriginHostCommand() *cobra.Command {
	var value string
	var useDefault bool
	cmd := &cobra.Command{
		Use:   "host NAME (--value HOST | --default)",
		Short: "Set the Host header sent to a domain's origins",
		Long: `Set the Host header edge nodes send to the origin. By default it is the
accelerated domain itself; --default restores that.`,
		Example: "  outpostctl origin host cdn.example.com --value origin.example.com\n  outpostctl origin host cdn.example.com --default",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.origins.SetOriginHost(ctx, &outpostv1.SetOriginHostRequest{Domain: args[0], HostHeader: value})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeOriginSettingsView(w, resp.GetSettings()) })
		},
	}
	cmd.Flags().StringVar(&value, "value", "", "the `HOST` header to send")
	cmd.Flags().BoolVar(&useDefault, "default", false, "send the accelerated domain as Host")
	cmd.MarkFlagsMutuallyExclusive("value", "default")
	cmd.MarkFlagsOneRequired("value", "default")
	return apiCommand(cmd)
}

func (a *app) newOriginProtocolCommand() *cobra.Command {
	policy := newEnumFlag(outpostv1.OriginProtocolPolicy(0))
	cmd := &cobra.Command{
		Use:   "protocol NAME --policy follow|http|https",
		Short: "Set the scheme used towards a domain's origins",
		Long: `Choose how edge nodes connect to the origin: with the scheme the client used
(follow, the default), always plain HTTP, or always HTTPS.`,
		Example: "  outpostctl origin protocol cdn.example.com --policy https",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.origins.SetOriginProtocol(ctx, &outpostv1.SetOriginProtocolRequest{Domain: args[0], Policy: policy.value})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeOriginSettingsView(w, resp.GetSettings()) })
		},
	}
	cmd.Flags().Var(policy, "policy", "the scheme towards origin")
	_ = cmd.MarkFlagRequired("policy")
	_ = cmd.RegisterFlagCompletionFunc("policy", fixedCompletion(policy.choices()...))
	return apiCommand(cmd)
}

func (a *app) newOriginVerifyCommand() *cobra.Command {
	var on, off bool
	var caFile string
	cmd := &cobra.Command{
		Use:   "verify NAME (--on | --off | --ca FILE)",
		Short: "Set how a domain's origin certificate is checked",
		Long: `Set how edge nodes check the origin's certificate over HTTPS:
  --on        verify it against the system's root CAs (the default)
  --ca FILE   verify it against the CA certificates in a PEM file
  --off       do not verify it (only for private origins you trust)`,
		Example: "  outpostctl origin verify cdn.example.com --ca internal-ca.pem\n  outpostctl origin verify cdn.example.com --on",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &outpostv1.SetOriginVerifyRequest{Domain: args[0], SkipVerify: off}
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("cannot read --ca: %w", err)
				}
				req.TrustedCaPem = string(pem)
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.origins.SetOriginVerify(ctx, req)
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeOriginSettingsView(w, resp.GetSettings()) })
		},
	}
	cmd.Flags().BoolVar(&on, "on", false, "verify against the system's root CAs")
	cmd.Flags().BoolVar(&off, "off", false, "skip verification")
	cmd.Flags().StringVar(&caFile, "ca", "", "verify against the CA certificates in this PEM `FILE`")
	cmd.MarkFlagsMutuallyExclusive("on", "off", "ca")
	cmd.MarkFlagsOneRequired("on", "off", "ca")
	_ = cmd.MarkFlagFilename("ca", "pem", "crt")
	return apiCommand(cmd)
}

// writeOriginSettingsView writes origin settings on their own.
func writeOriginSettingsView(w io.Writer, s *outpostv1.OriginSettings) error {
	v := newDetails(w)
	writeOriginSettings(v, s)
	return v.flush()
}

// writeOriginSettings adds the origin settings fields to a details view.
func writeOriginSettings(v *details, s *outpostv1.OriginSettings) {
	sni := "off"
	if s.GetSni().GetEnabled() {
		sni = s.GetSni().GetValue()
	}
	v.field("Origin SNI", sni)
	host := s.GetHostHeader()
	if host == "" {
		host = "(the accelerated domain)"
	}
	v.field("Origin Host header", host)
	protocol := s.GetProtocolPolicy()
	if protocol == outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_UNSPECIFIED {
		protocol = outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_FOLLOW
	}
	v.field("Origin protocol", enumName(protocol))
	v.field("Origin certificate check", verifySummary(s))
}

func verifySummary(s *outpostv1.OriginSettings) string {
	switch {
	case s.GetSkipVerify():
		return "off (not verified)"
	case s.GetTrustedCaPem() != "":
		n := strings.Count(s.GetTrustedCaPem(), "-----BEGIN CERTIFICATE-----")
		return fmt.Sprintf("on, against %d custom CA certificate(s)", n)
	}
	return "on, against the system's root CAs"
}
