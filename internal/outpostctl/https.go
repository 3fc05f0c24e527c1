package outpostctl

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newHTTPSCommand() *cobra.Command {
	return newGroup("https", "Serve a domain over HTTPS",
		`Turn HTTPS between clients and edge nodes on or off for a domain, and force
redirects between HTTP and HTTPS. The certificate either is one uploaded with
'cert upload' (--cert-id), is uploaded now for this domain alone
(--cert/--key), or is a free certificate the controllers obtain and renew
from their ACME CA (--free); a domain-owned or free certificate is
forgotten, key included, when HTTPS is disabled.`,
		a.newHTTPSEnableCommand(),
		a.newHTTPSDisableCommand(),
		a.newHTTPSRedirectCommand(),
		a.newHTTPSGetCommand(),
	)
}

func (a *app) newHTTPSEnableCommand() *cobra.Command {
	var certID, certFile, keyFile, certName string
	var free bool
	cmd := &cobra.Command{
		Use:   "enable NAME (--cert-id ID | --cert FILE --key FILE [--cert-name NAME] | --free)",
		Short: "Turn HTTPS on for a domain with a certificate",
		Long: `Bind a certificate to a domain and turn HTTPS on; enabling again replaces the
certificate. The certificate must cover the domain name.

With --free the controllers obtain a free certificate from their ACME CA,
which validates the domain over plain HTTP on the edge nodes (HTTP-01), so
the domain's DNS must already lead to them; wildcard domains cannot have
one. HTTPS stays as it is (off, or with its current certificate) until the
certificate is issued, and the certificate is renewed before it expires.
Follow it with 'https get NAME'. It fails with FreeCertificatesDisabled when
the operator has configured no ACME CA.`,
		Example: `  outpostctl https enable cdn.example.com --cert-id cert-0123
  outpostctl https enable cdn.example.com --cert fullchain.pem --key privkey.pem
  outpostctl https enable cdn.example.com --free`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &outpostv1.EnableHttpsRequest{Domain: args[0]}
			if free {
				req.Source = &outpostv1.EnableHttpsRequest_Free{Free: true}
			} else if certID != "" {
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
	cmd.Flags().BoolVar(&free, "free", false, "obtain a free certificate from the controllers' ACME CA, and renew it")
	cmd.MarkFlagsOneRequired("cert-id", "cert", "free")
	for _, other := range []string{"cert-id", "cert", "key", "cert-name"} {
		cmd.MarkFlagsMutuallyExclusive("free", other)
	}
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
	if f := h.GetFree(); f != nil {
		v.field("Free certificate", freeSummary(f))
		if f.GetError() != "" {
			v.field("CA's reason", oneLine(f.GetError()))
		}
		if next := f.GetNextAttemptTime(); next != nil {
			label := "Next attempt"
			if f.GetStatus() == outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_ISSUED {
				label = "Renewal"
			}
			v.field(label, timestamp(next))
		}
	}
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
	f := h.GetFree()
	if !h.GetEnabled() {
		if f != nil {
			return "off, free certificate " + freeSummary(f)
		}
		return "off"
	}
	s := "on, certificate " + orDash(h.GetCertificateId())
	switch {
	case f != nil && f.GetStatus() == outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_ISSUED:
		s += " (free)"
	case f != nil:
		s += ", free certificate " + freeSummary(f)
	case h.GetCertificateOwned():
		s += " (uploaded for this domain)"
	}
	if r := h.GetRedirect(); r != outpostv1.RedirectPolicy_REDIRECT_POLICY_UNSPECIFIED && r != outpostv1.RedirectPolicy_REDIRECT_POLICY_OFF {
		s += ", " + redirectSummary(r)
	}
	return s
}

// freeSummary renders the state of a free certificate: "applying",
// "issued", or "failed" with the attempts since the last success.
func freeSummary(f *outpostv1.FreeCertificate) string {
	switch f.GetStatus() {
	case outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING:
		return "applying"
	case outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_ISSUED:
		return "issued"
	case outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_FAILED:
		if n := f.GetAttempts(); n > 1 {
			return fmt.Sprintf("failed (%d attempts)", n)
		}
		return "failed"
	}
	return enumName(f.GetStatus())
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
