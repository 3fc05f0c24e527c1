package outpostctl

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newTokenCommand() *cobra.Command {
	cmd := newGroup("token", "Create, list and revoke bearer tokens",
		`A token authenticates requests and carries a role:
  admin      reads and writes one account's domains and certificates
  read-only  reads one account's domains and certificates
  operator   manages accounts, tokens and nodes of the whole cluster
An account admin may create and revoke its own account's tokens; operator
tokens need an operator token. Edge nodes and schedulers do not use tokens:
they join with one-time join tokens ('node join-token create') and then
authenticate with certificates.`,
		a.newTokenCreateCommand(),
		a.newTokenListCommand(),
		a.newTokenRevokeCommand(),
	)
	cmd.Aliases = []string{"tokens"}
	return cmd
}

func (a *app) newTokenCreateCommand() *cobra.Command {
	var account, description string
	role := newEnumFlag(outpostv1.Role(0))
	cmd := &cobra.Command{
		Use:   "create --role ROLE [--account ID] [--description TEXT]",
		Short: "Create a token and print its secret once",
		Long: `Create a token. admin and read-only tokens belong to an account (--account;
an account admin's own account when left out); operator tokens belong to
none. The secret is printed once and cannot be read again. For edge nodes and
schedulers, use 'node join-token create'.`,
		Example: `  outpostctl token create --account acme --role admin --description "CI deploys"
  outpostctl token create --role operator --description "ops team"
  secret=$(outpostctl token create --role read-only -o json | jq -r .secret)`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.accounts.CreateToken(ctx, &outpostv1.CreateTokenRequest{
				Account: account, Role: role.value, Description: description,
			})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				t := resp.GetToken()
				owner := ""
				if t.GetAccount() != "" {
					owner = ", account " + t.GetAccount()
				}
				_, err := fmt.Fprintf(w, "Created token %s (role %s%s).\n\n    %s\n\n"+
					"This is the token's secret: store it now, it will not be shown again.\n"+
					"Use it with --token or %s.\n",
					t.GetId(), enumName(t.GetRole()), owner, resp.GetSecret(), envToken)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&account, "account", "", "the account `ID` the token belongs to")
	cmd.Flags().Var(role, "role", "what the token may do")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for")
	_ = cmd.MarkFlagRequired("role")
	_ = cmd.RegisterFlagCompletionFunc("role", fixedCompletion(role.choices()...))
	return apiCommand(cmd)
}

func (a *app) newTokenListCommand() *cobra.Command {
	var account string
	cmd := &cobra.Command{
		Use:     "list [--account ID]",
		Aliases: []string{"ls"},
		Short:   "List tokens (never their secrets)",
		Long: `List token descriptions. Without --account: your own account's tokens, or
for an operator the operator tokens.`,
		Example: "  outpostctl token list\n  outpostctl token list --account acme",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.accounts.ListTokens(ctx, &outpostv1.ListTokensRequest{Account: account})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(resp.GetTokens()) == 0 {
					_, err := fmt.Fprintln(w, "No tokens.")
					return err
				}
				t := newTable(w, "ID", "ACCOUNT", "ROLE", "DESCRIPTION", "CREATED")
				for _, tok := range resp.GetTokens() {
					t.row(tok.GetId(), tok.GetAccount(), enumName(tok.GetRole()), truncate(tok.GetDescription(), 50), timestamp(tok.GetCreateTime()))
				}
				return t.flush()
			})
		},
	}
	cmd.Flags().StringVar(&account, "account", "", "list this account's tokens")
	return apiCommand(cmd)
}

func (a *app) newTokenRevokeCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "revoke ID",
		Aliases: []string{"rm", "delete"},
		Short:   "Revoke a token",
		Long:    "Delete a token; requests made with it fail from then on.",
		Example: "  outpostctl token revoke tok-0123",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.accounts.RevokeToken(ctx, &outpostv1.RevokeTokenRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Revoked token %s.\n", args[0])
				return err
			})
		},
	})
}

func (a *app) newWhoAmICommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "whoami",
		Short:   "Show which token you are using",
		Long:    "Show the ID, role and account of the token outpostctl sends.",
		Example: "  outpostctl whoami\n  OUTPOST_TOKEN=... outpostctl whoami -o json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.accounts.WhoAmI(ctx, &outpostv1.WhoAmIRequest{})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				t := resp.GetToken()
				v := newDetails(w)
				v.field("Token", t.GetId())
				v.field("Role", enumName(t.GetRole()))
				v.field("Account", t.GetAccount())
				v.field("Description", t.GetDescription())
				v.field("Created", timestamp(t.GetCreateTime()))
				v.field("Controller", a.flags.controller)
				return v.flush()
			})
		},
	})
}
