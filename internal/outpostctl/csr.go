package outpostctl

// cert csr: certificate signing requests whose key the controller makes and
// keeps.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// csrKeyTypes maps the --key-type choices of `cert csr create` to key types.
var csrKeyTypes = map[string]outpostv1.KeyType{
	"ec":      outpostv1.KeyType_KEY_TYPE_EC_P256,
	"rsa2048": outpostv1.KeyType_KEY_TYPE_RSA_2048,
	"rsa3072": outpostv1.KeyType_KEY_TYPE_RSA_3072,
}

func (a *app) newCertCSRCommand() *cobra.Command {
	cmd := newGroup("csr", "Have a CA sign a key that never leaves Outpost",
		`Create a certificate signing request (CSR) whose private key the controller
makes and keeps sealed, give the request to a CA, then complete the CSR with
the certificate the CA signed. It becomes a certificate of your account, as
'cert upload' makes one, for 'https enable --cert-id'. The private key is
never shown, not even to you.`,
		a.newCSRCreateCommand(),
		a.newCSRGetCommand(),
		a.newCSRListCommand(),
		a.newCSRCompleteCommand(),
		a.newCSRDeleteCommand(),
	)
	cmd.Aliases = []string{"csrs"}
	return cmd
}

func (a *app) newCSRCreateCommand() *cobra.Command {
	var (
		cn, name, org, country, out string
		sans                        []string
	)
	keyType := choiceValue{value: "ec", choices: []string{"ec", "rsa2048", "rsa3072"}}
	cmd := &cobra.Command{
		Use:   "create --cn NAME [--san NAME ...] [--key-type ec|rsa2048|rsa3072] [--out FILE]",
		Short: "Make a key pair and a signing request for it",
		Long: `Make a key pair in the controller and a PKCS#10 signing request for it. The
common name is also the first DNS name (SAN) of the request; --san adds more,
wildcards allowed. The key is ECDSA P-256 unless --key-type asks for RSA.

Prints the CSR's ID and how to complete it, then the request (PEM). With
--out, writes the request alone to FILE and prints only the ID, for scripts.`,
		Example: `  outpostctl cert csr create --cn www.example.com --san example.com --org "Example Ltd" --country GB
  id=$(outpostctl cert csr create --cn www.example.com --key-type rsa2048 --out www.csr)
  outpostctl cert csr complete "$id" --cert signed-chain.pem`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{
				Name:         name,
				CommonName:   cn,
				DnsNames:     sans,
				KeyType:      csrKeyTypes[keyType.value],
				Organization: org,
				Country:      country,
			})
			if err != nil {
				return err
			}
			csr := resp.GetCsr()
			if out != "" {
				// A request is public: readable by all, like a certificate.
				if err := os.WriteFile(out, []byte(publicPEM(csr.GetCsrPem())), 0o644); err != nil {
					return fmt.Errorf("CSR %s created, but --out: %w", csr.GetId(), err)
				}
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				if out != "" {
					_, err := fmt.Fprintln(w, csr.GetId())
					return err
				}
				_, err := fmt.Fprintf(w, "Created CSR %s for %s (%s key, kept by Outpost).\nHave a CA sign the request below, then run:\n  outpostctl cert csr complete %s --cert CHAIN.pem\n\n%s",
					csr.GetId(), csr.GetCommonName(), enumName(csr.GetKeyType()), csr.GetId(), publicPEM(csr.GetCsrPem()))
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cn, "cn", "", "the common `NAME`, also the first DNS name")
	f.StringArrayVar(&sans, "san", nil, "another DNS `NAME` (SAN) to certify; repeat for more")
	f.Var(&keyType, "key-type", "the key to make: ec (ECDSA P-256), rsa2048 or rsa3072")
	f.StringVar(&name, "name", "", "a label for the certificate it becomes (default: the common name)")
	f.StringVar(&org, "org", "", "the subject's organization (O)")
	f.StringVar(&country, "country", "", "the subject's two-letter country code (C)")
	f.StringVar(&out, "out", "", "write the request (PEM) to `FILE` and print only the CSR's ID")
	_ = cmd.MarkFlagRequired("cn")
	_ = cmd.RegisterFlagCompletionFunc("key-type", fixedCompletion(keyType.choices...))
	_ = cmd.MarkFlagFilename("out", "csr", "pem")
	return apiCommand(cmd)
}

func (a *app) newCSRGetCommand() *cobra.Command {
	var pemOnly bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a CSR",
		Long: `Show a CSR's names, key type and state: pending, or the certificate it
became. --pem prints the request instead.`,
		Example: "  outpostctl cert csr get csr-0123\n  outpostctl cert csr get csr-0123 --pem | openssl req -noout -text",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.GetCsr(ctx, &outpostv1.GetCsrRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				if pemOnly {
					_, err := io.WriteString(w, publicPEM(resp.GetCsr().GetCsrPem()))
					return err
				}
				return writeCSR(w, resp.GetCsr())
			})
		},
	}
	cmd.Flags().BoolVar(&pemOnly, "pem", false, "print the request (PEM)")
	return apiCommand(cmd)
}

func (a *app) newCSRListCommand() *cobra.Command {
	var pageSize int32
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List CSRs",
		Long:    "List your account's CSRs in ID order, every page of them, pending and completed.",
		Example: "  outpostctl cert csr list\n  outpostctl cert csr list -o json | jq -r '.csrs[] | select(.certificateId == null) | .id'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			csrs, err := listAll(cmd.Context(), a.flags.timeout, func(ctx context.Context, token string) ([]*outpostv1.Csr, string, error) {
				resp, err := a.api.certs.ListCsrs(ctx, &outpostv1.ListCsrsRequest{PageSize: pageSize, PageToken: token})
				return resp.GetCsrs(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			resp := &outpostv1.ListCsrsResponse{Csrs: csrs}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(csrs) == 0 {
					_, err := fmt.Fprintln(w, "No CSRs. Create one with 'outpostctl cert csr create --cn NAME'.")
					return err
				}
				t := newTable(w, "ID", "NAME", "COMMON-NAME", "DNS-NAMES", "KEY", "CREATED", "CERTIFICATE")
				for _, c := range csrs {
					t.row(c.GetId(), c.GetName(), c.GetCommonName(), truncate(strings.Join(c.GetDnsNames(), ","), 50),
						enumName(c.GetKeyType()), timestamp(c.GetCreateTime()), csrState(c))
				}
				return t.flush()
			})
		},
	}
	pageSizeFlag(cmd, &pageSize)
	return apiCommand(cmd)
}

func (a *app) newCSRCompleteCommand() *cobra.Command {
	var certFile string
	cmd := &cobra.Command{
		Use:   "complete ID --cert FILE",
		Short: "Store the certificate a CA signed for a CSR",
		Long: `Complete a CSR with the PEM chain (leaf first) a CA signed for it. The
certificate must be for the CSR's key and valid now. It becomes a certificate
of your account with the CSR's key; prints its ID, for 'https enable
--cert-id'. A CSR is completed once.`,
		Example: `  id=$(outpostctl cert csr complete csr-0123 --cert signed-chain.pem)
  outpostctl https enable www.example.com --cert-id "$id"`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			chain, err := readChain(certFile)
			if err != nil {
				return err
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: args[0], CertificatePem: chain})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, resp.GetCertificate().GetId())
				return err
			})
		},
	}
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain `FILE` the CA signed, leaf first")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagFilename("cert", "pem", "crt", "cer")
	return apiCommand(cmd)
}

func (a *app) newCSRDeleteCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete a CSR (and, while it is pending, its private key)",
		Long: `Delete a CSR. A pending CSR's private key is deleted with it: a certificate a
CA signs for it later cannot be completed. A completed CSR's key belongs to
its certificate, which stays ('cert delete' deletes that).`,
		Example: "  outpostctl cert csr delete csr-0123",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.DeleteCsr(ctx, &outpostv1.DeleteCsrRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Deleted CSR %s.\n", args[0])
				return err
			})
		},
	})
}

// readChain reads a certificate chain file, refusing one that holds a
// private key: a CSR's key is in Outpost already, and a key never travels
// as (public) certificate material.
func readChain(certFile string) (string, error) {
	c, err := os.ReadFile(certFile)
	if err != nil {
		return "", fmt.Errorf("cannot read --cert: %w", err)
	}
	if strings.Contains(string(c), "PRIVATE KEY") {
		return "", fmt.Errorf("--cert %s holds a private key: give the signed certificate chain alone (the CSR's key is in Outpost already)", certFile)
	}
	if len(strings.TrimSpace(string(c))) == 0 {
		return "", errors.New("--cert " + certFile + " is empty")
	}
	return string(c), nil
}

// csrState is a CSR's state for people: the certificate it became, or
// pending.
func csrState(c *outpostv1.Csr) string {
	if id := c.GetCertificateId(); id != "" {
		return id
	}
	return "pending"
}

// writeCSR writes the `cert csr get` view of a CSR.
func writeCSR(w io.Writer, c *outpostv1.Csr) error {
	v := newDetails(w)
	v.field("ID", c.GetId())
	v.field("Name", c.GetName())
	v.field("Common name", c.GetCommonName())
	v.field("DNS names", c.GetDnsNames()...)
	v.field("Key type", enumName(c.GetKeyType()))
	v.field("Account", c.GetAccount())
	v.field("Created", timestamp(c.GetCreateTime()))
	if id := c.GetCertificateId(); id != "" {
		v.field("State", "completed: certificate "+id)
	} else {
		v.field("State", "pending: have a CA sign it, then 'outpostctl cert csr complete "+c.GetId()+" --cert FILE'")
	}
	return v.flush()
}
