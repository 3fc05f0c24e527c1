package outpostctl

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The cluster PKI: join tokens, member certificates and revocation (under
// `node`), and the CA certificate (`pki ca`).

func (a *app) newPKICommand() *cobra.Command {
	return newGroup("pki", "Show the cluster CA",
		`The controllers keep a cluster CA. It signs their serving certificates and the
certificates edge nodes and schedulers receive when they join. Admin clients
trust it with --tls-ca (or OUTPOST_TLS_CA); see docs/security.md.`,
		a.newPKICACommand(),
	)
}

func (a *app) newPKICACommand() *cobra.Command {
	var pinOnly bool
	cmd := &cobra.Command{
		Use:   "ca [--pin]",
		Short: "Print the cluster CA certificate (PEM) or its pin",
		Long: `Print the cluster CA certificate, PEM, to trust the controllers with
(outpostctl --tls-ca, grpcurl -cacert), or its pin with --pin. It needs no
token, but a connection that already trusts the CA: take the first copy from
the file a controller writes (-ca-cert-out), and check a copy from elsewhere
against the pin that 'node join-token create' prints.`,
		Example: "  outpostctl --tls-ca /var/lib/outpost/ca.pem pki ca > ca.pem\n  outpostctl --tls-ca ca.pem pki ca --pin",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.pki.GetCaCertificate(ctx, &outpostv1.GetCaCertificateRequest{})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				if pinOnly {
					_, err := fmt.Fprintln(w, resp.GetCaPin())
					return err
				}
				_, err := io.WriteString(w, resp.GetCaCertificatePem())
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&pinOnly, "pin", false, "print the CA pin (sha256 of its public key) instead")
	return apiCommand(cmd)
}

func (a *app) newJoinTokenCommand() *cobra.Command {
	return newGroup("join-token", "Create one-time join tokens for edge nodes and schedulers",
		`An edge node or scheduler joins the cluster with a one-time join token: it
sends a CSR with it and receives a certificate signed by the cluster CA, which
it authenticates with from then on (mutual TLS) and renews before it expires.
The token carries the CA pin, so the member trusts the controllers on first
contact. Needs an operator token.`,
		a.newJoinTokenCreateCommand(),
	)
}

func (a *app) newJoinTokenCreateCommand() *cobra.Command {
	var (
		ttl         time.Duration
		name        string
		description string
	)
	role := newEnumFlag(outpostv1.MemberRole_MEMBER_ROLE_NODE)
	cmd := &cobra.Command{
		Use:   "create [--ttl 1h] [--name NAME] [--role node|scheduler]",
		Short: "Create a one-time join token",
		Long: `Create a one-time join token. It is printed once; the controllers keep only
its hash. It works for one join, within --ttl (at most 168h), as --name if
given (else as any name), for --role. Give it to the new member as
-join-token (OUTPOST_NODE_JOIN_TOKEN, or OUTPOST_SCHEDULER_JOIN_TOKEN).`,
		Example: "  outpostctl node join-token create --name edge-fra-1\n  OUTPOST_NODE_JOIN_TOKEN=$(outpostctl node join-token create --name edge-fra-1 -o json | jq -r .token) outpost-node -name edge-fra-1 ...\n  outpostctl node join-token create --role scheduler --ttl 10m",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.pki.CreateJoinToken(ctx, &outpostv1.CreateJoinTokenRequest{
				Ttl: durationpb.New(ttl), Name: name, Role: role.value, Description: description,
			})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				v := newDetails(w)
				v.field("Token", resp.GetToken())
				v.field("Token ID", resp.GetTokenId())
				v.field("Expires", timestamp(resp.GetExpireTime()))
				v.field("CA pin", resp.GetCaPin())
				if err := v.flush(); err != nil {
					return err
				}
				_, err := fmt.Fprintln(w, "\nThe token is shown only now, and works once.")
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	cmd.Flags().StringVar(&name, "name", "", "the only member name the token joins as (default: any)")
	cmd.Flags().Var(role, "role", "the member's role: node or scheduler")
	cmd.Flags().StringVar(&description, "description", "", "a note kept with the token")
	_ = cmd.RegisterFlagCompletionFunc("role", fixedCompletion(role.choices()...))
	return apiCommand(cmd)
}

func (a *app) newNodeRevokeCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an edge node's or scheduler's certificates",
		Long: `Revoke every certificate issued so far to the member NAME (an edge node or a
scheduler). The controllers refuse them from then on and end its config
stream within seconds; it cannot renew. It can come back only with a new join
token. Needs an operator token.`,
		Example: "  outpostctl node revoke edge-fra-1",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.pki.RevokeMember(ctx, &outpostv1.RevokeMemberRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Revoked %d certificate(s) of %s.\n", resp.GetRevoked(), args[0])
				return err
			})
		},
	})
}

func (a *app) newNodeCertsCommand() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "certs [--name NAME]",
		Short:   "List the certificates issued to edge nodes and schedulers",
		Long:    `List the member certificates issued, oldest first: serial, member, role, validity and revocation. Needs an operator token.`,
		Example: "  outpostctl node certs\n  outpostctl node certs --name edge-fra-1",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.pki.ListMemberCertificates(ctx, &outpostv1.ListMemberCertificatesRequest{Name: name})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(resp.GetCertificates()) == 0 {
					_, err := fmt.Fprintln(w, "No member certificates.")
					return err
				}
				t := newTable(w, "SERIAL", "NAME", "ROLE", "NOT-AFTER", "REVOKED", "ISSUED-FOR")
				for _, c := range resp.GetCertificates() {
					revoked := "-"
					if c.GetRevokeTime() != nil {
						revoked = timestamp(c.GetRevokeTime())
					}
					t.row(c.GetSerial(), c.GetName(), enumName(c.GetRole()), timestamp(c.GetNotAfter()), revoked, c.GetIssuedFor())
				}
				return t.flush()
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "only this member's certificates")
	return apiCommand(cmd)
}
