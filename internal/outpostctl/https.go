package outpostctl

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newHTTPSCommand() *cobra.Command {
	return newGroup("https", "Serve a domain over HTTPS",
		`Turn HTTPS between clients and edge nodes on or off for a domain, and force
redirects between HTTP and HTTPS. The certificate either is one uploaded with
'cert upload' (--cert-id) or is uploaded now for this domain alone
(--cert/--key); such a domain-owned certificate is forgotten, key included,
when HTTPS is disabled.`,
		a.newHTTPSEnableCommand(),
		a.newHTTPSDisableCommand(),
		a.newHTTPSRedirectCommand(),
		a.newHTTPSGetCommand(),
	)
}

func (a *app) newHTTPSEnableCommand() *cobra.Command {
	var certID, certFile, keyFile, certName string
	cmd := &cobra.Command{
		Use:   "enable NAME (--cert-id ID | --cert FILE --key FILE [--cert-name NAME])",
		Short: "Turn HTTPS on for a domain with a certificate",
		Long: `Bind a certificate to a domain and turn HTTPS on; enabling again replaces the
certificate. The certificate must cover the domain name.`,
		Example: `  outpostctl https enable cdn.example.com --cert-id cert-0123
  outpostctl https enable cdn.example.com --cert fullchain.pem --key privkey.pem`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &outpostv1.EnableHttpsRequest{Domain: args[0]}
			if certID != "" {
				req.Source = &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: certID}
			} else {
				certPEM, keyPEM, err := readCertAndKey(certFile, keyFile)
				if err != nil {
					return err
				}
				req.Source = &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
					Name:           certName,
					CertificatePem: certPEM,
					PrivateKeyPem:  keyPEM,
				}}
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.https.EnableHttps(ctx, req)
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				return writeHTTPS(w, args[0], resp.GetHttps(), resp.GetCertificate())
			})
		},
	}
	cmd.Flags().StringVar(&certID, "cert-id", "", "`ID` of a certificate uploaded with 'cert upload'")
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain `FILE` to upload for this domain")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM private key `FILE` of --cert")
	cmd.Flags().StringVar(&certName, "cert-name", "", "a label for the certificate uploaded with --cert")
	cmd.MarkFlagsOneRequired("cert-id", "cert")
	cmd.MarkFlagsMutuallyExclusive("cert-id", "cert")
	cmd.MarkFlagsMutuallyExclusive("cert-id", "key")
	cmd.MarkFlagsMutuallyExclusive("cert-id", "cert-name")
	cmd.MarkFlagsRequiredTogether("cert", "key")
	_ = cmd.MarkFlagFilename("cert", "pem", "crt", "cer")
	_ = cmd.MarkFlagFilename("key", "pem", "key")
	return apiCommand(cmd)
}

func (a *app) newHTTPSDisableCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:   "disable NAME",
		Short: "Turn HTTPS off for a domain",
		Long: `Turn HTTPS off and unbind the certificate. A certificate uploaded with
'https enable --cert' is deleted with its key; one from 'cert upload' stays.`,
		Example: "  outpostctl https disable cdn.example.com",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.https.DisableHttps(ctx, &outpostv1.DisableHttpsRequest{Domain: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeHTTPS(w, args[0], resp.GetHttps(), nil) })
		},
	})
}

func (a *app) newHTTPSRedirectCommand() *cobra.Command {
	to := newEnumFlag(outpostv1.RedirectPolicy(0))
	cmd := &cobra.Command{
		Use:   "redirect NAME --to https|http|off",
		Short: "Force a redirect between HTTP and HTTPS",
		Long: `Redirect a domain's plain HTTP requests to HTTPS (--to https), its HTTPS
requests to plain HTTP (--to http), or neither (--to off).`,
		Example: "  outpostctl https redirect cdn.example.com --to https",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.https.SetHttpsRedirect(ctx, &outpostv1.SetHttpsRedirectRequest{Domain: args[0], Redirect: to.value})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeHTTPS(w, args[0], resp.GetHttps(), nil) })
		},
	}
	cmd.Flags().Var(to, "to", "the scheme requests are redirected to")
	_ = cmd.MarkFlagRequired("to")
	_ = cmd.RegisterFlagCompletionFunc("to", fixedCompletion(to.choices()...))
	return apiCommand(cmd)
}

func (a *app) newHTTPSGetCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "get NAME",
		Short:   "Show a domain's HTTPS settings and certificate",
		Example: "  outpostctl https get cdn.example.com",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.https.GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				return writeHTTPS(w, args[0], resp.GetHttps(), resp.GetCertificate())
			})
		},
	})
}

// writeHTTPS writes a domain's HTTPS settings and, when known, its certificate.
func writeHTTPS(w io.Writer, domain string, h *outpostv1.HttpsSettings, cert *outpostv1.Certificate) error {
	v := newDetails(w)
	v.field("Domain", domain)
	v.field("HTTPS", httpsSummary(h))
	v.field("Redirect", redirectSummary(h.GetRedirect()))
	if cert != nil {
		v.field("Certificate name", cert.GetName())
		v.field("DNS names", cert.GetDnsNames()...)
		v.field("Issuer", cert.GetIssuer())
		v.field("Valid until", validUntil(cert, time.Now()))
		v.field("SHA-256 fingerprint", cert.GetFingerprintSha256())
	}
	return v.flush()
}

// httpsSummary renders HTTPS settings in one cell.
func httpsSummary(h *outpostv1.HttpsSettings) string {
	if !h.GetEnabled() {
		return "off"
	}
	s := "on, certificate " + orDash(h.GetCertificateId())
	if h.GetCertificateOwned() {
		s += " (uploaded for this domain)"
	}
	if r := h.GetRedirect(); r != outpostv1.RedirectPolicy_REDIRECT_POLICY_UNSPECIFIED && r != outpostv1.RedirectPolicy_REDIRECT_POLICY_OFF {
		s += ", " + redirectSummary(r)
	}
	return s
}

func redirectSummary(r outpostv1.RedirectPolicy) string {
	switch r {
	case outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS:
		return "HTTP redirected to HTTPS"
	case outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTP:
		return "HTTPS redirected to HTTP"
	}
	return "off"
}
