package outpostctl

// keyring: the controllers' key-encryption keys, for operators rotating
// them.

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newKeyringCommand() *cobra.Command {
	return newGroup("keyring", "See and re-wrap the secrets under each key-encryption key",
		`The controllers seal every secret they keep in etcd (private keys, the
gossip keyring) with a data key of its own, wrapped by a key-encryption key
(KEK) of their keyring. After a new KEK becomes the primary, re-wrap the
secrets with it (the controllers also do it in the background), check that
no secret is left under the old KEK, then remove that KEK from the keyrings.
Needs an operator token. See "Rotating the key-encryption key" in
docs/operations.md.`,
		a.newKeyringStatusCommand(),
		a.newKeyringRewrapCommand(),
	)
}

func (a *app) newKeyringStatusCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:   "status",
		Short: "Count the sealed secrets under each key-encryption key",
		Long: `Count the sealed secrets in etcd by the KEK that wraps them. Every KEK of the
answering controller's keyring is listed, primary first, and then any KEK a
secret uses that this keyring lacks (IN-KEYRING no: those secrets cannot be
opened here).`,
		Example: "  outpostctl keyring status\n  outpostctl keyring status -o json | jq '.usage[] | select(.kekId != \"k2\") | .secrets'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.keyring.GetKeyringStatus(ctx, &outpostv1.GetKeyringStatusRequest{})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeKeyringStatus(w, resp) })
		},
	})
}

func (a *app) newKeyringRewrapCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:   "rewrap",
		Short: "Re-wrap every secret with the primary key-encryption key",
		Long: `Re-wrap every sealed secret that is not under the primary KEK of the
answering controller's keyring. Only the wrapped data keys change: the
secrets themselves are not re-encrypted, and edge nodes see no difference. A
secret changed meanwhile is read again, never overwritten. Exits with status 1
if a secret could not be re-wrapped (its KEK is not in the keyring).`,
		Example: "  outpostctl keyring rewrap\n  outpostctl keyring status",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.keyring.RewrapSecrets(ctx, &outpostv1.RewrapSecretsRequest{})
			if err != nil {
				return err
			}
			err = a.render(cmd, resp, func(w io.Writer) error {
				if _, err := fmt.Fprintf(w, "Re-wrapped %d secret(s) with the primary key-encryption key; %d already were.\n",
					resp.GetRewrapped(), resp.GetAlreadyCurrent()); err != nil {
					return err
				}
				for _, k := range resp.GetFailedKeys() {
					if _, err := fmt.Fprintf(w, "Not re-wrapped: %s\n", k); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if n := len(resp.GetFailedKeys()); n > 0 {
				return fmt.Errorf("%d record(s) could not be re-wrapped: their key-encryption key is not in the controller's keyring, or they changed throughout; see the controller's log", n)
			}
			return nil
		},
	})
}

// writeKeyringStatus writes the `keyring status` table and what it means.
func writeKeyringStatus(w io.Writer, resp *outpostv1.GetKeyringStatusResponse) error {
	primary := resp.GetPrimaryKekId()
	t := newTable(w, "KEK", "SECRETS", "IN-KEYRING", "PRIMARY")
	var others, unknown uint32
	for _, u := range resp.GetUsage() {
		t.row(u.GetKekId(), fmt.Sprint(u.GetSecrets()), yesNo(u.GetKnown()), yesNo(u.GetKekId() == primary))
		switch {
		case !u.GetKnown():
			unknown += u.GetSecrets()
		case u.GetKekId() != primary:
			others += u.GetSecrets()
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	var msg string
	switch {
	case unknown > 0:
		msg = fmt.Sprintf("%d secret(s) are under a KEK this controller's keyring lacks: they cannot be opened here. Put that KEK back in the keyring.", unknown)
	case others > 0:
		msg = fmt.Sprintf("%d secret(s) are under a KEK other than the primary %s: run 'outpostctl keyring rewrap' before removing it.", others, primary)
	case len(resp.GetUsage()) > 1:
		msg = fmt.Sprintf("Every secret is under the primary KEK %s: the other KEKs can be removed from the keyrings.", primary)
	default:
		msg = fmt.Sprintf("Every secret is under the primary KEK %s.", primary)
	}
	_, err := fmt.Fprintln(w, "\n"+msg)
	return err
}
