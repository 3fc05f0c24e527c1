package outpostctl

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-cdn/outpost/internal/membership"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newNodeCommand() *cobra.Command {
	cmd := newGroup("node", "Inspect, drain, join and revoke edge nodes",
		`See the edge nodes the controllers know: their health, the configuration
revision each has applied and the last one it refused; take a node out of
scheduling (drain) without stopping it; create join tokens for new edge nodes
and schedulers, list their certificates and revoke them.`,
		a.newNodeListCommand(),
		a.newNodeGetCommand(),
		a.newNodeDrainCommand(),
		a.newGossipKeyringCommand(),
		a.newJoinTokenCommand(),
		a.newNodeRevokeCommand(),
		a.newNodeCertsCommand(),
	)
	cmd.Aliases = []string{"nodes"}
	return cmd
}

func (a *app) newNodeListCommand() *cobra.Command {
	var pageSize int32
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List edge nodes",
		Long: `List every known edge node in name order, every page of them.
APPLIED-REVISION is the config revision the node applied, over the newest
revision: a node that is behind shows a smaller first number.`,
		Example: "  outpostctl node list\n  outpostctl node list -o json | jq -r '.nodes[] | select(.health != \"NODE_HEALTH_CONNECTED\") | .name'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var revision int64
			nodes, err := listAll(cmd.Context(), a.flags.timeout, func(ctx context.Context, token string) ([]*outpostv1.Node, string, error) {
				resp, err := a.api.nodes.ListNodes(ctx, &outpostv1.ListNodesRequest{PageSize: pageSize, PageToken: token})
				revision = max(revision, resp.GetCurrentRevision())
				return resp.GetNodes(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			resp := &outpostv1.ListNodesResponse{Nodes: nodes, CurrentRevision: revision}
			return a.render(cmd, resp, func(w io.Writer) error { return writeNodeTable(w, resp) })
		},
	}
	pageSizeFlag(cmd, &pageSize)
	return apiCommand(cmd)
}

func (a *app) newNodeGetCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "get NAME",
		Short:   "Show an edge node",
		Example: "  outpostctl node get edge-fra-1",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.nodes.GetNode(ctx, &outpostv1.GetNodeRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeNode(w, resp.GetNode()) })
		},
	})
}

func (a *app) newNodeDrainCommand() *cobra.Command {
	var undo bool
	cmd := &cobra.Command{
		Use:   "drain NAME [--undo]",
		Short: "Take an edge node out of scheduling, or put it back",
		Long: `Stop sending clients to an edge node without stopping it, for maintenance;
--undo puts it back in scheduling. Needs an operator token.`,
		Example: "  outpostctl node drain edge-fra-1\n  outpostctl node drain edge-fra-1 --undo",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.nodes.DrainNode(ctx, &outpostv1.DrainNodeRequest{Name: args[0], Draining: !undo})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				state := "back in scheduling"
				if resp.GetNode().GetDraining() {
					state = "draining: out of scheduling"
				}
				_, err := fmt.Fprintf(w, "Node %s is %s.\n", resp.GetNode().GetName(), state)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&undo, "undo", false, "put the node back in scheduling")
	return apiCommand(cmd)
}

func (a *app) newGossipKeyringCommand() *cobra.Command {
	return newGroup("gossip-keyring", "Set or show the keys that encrypt gossip",
		`The gossip keyring encrypts memberlist gossip among edge nodes and
schedulers (AES-GCM). Nodes and schedulers started without a keyring file of
their own take the controller's and apply a new one without a restart.

Rotate a key without membership flaps in three steps, waiting after each
until every node's APPLIED-REVISION (outpostctl node list) reaches the
revision the step printed:
  1. set OLD,NEW   (the new key is known everywhere)
  2. set NEW,OLD   (the new key encrypts)
  3. set NEW       (the old key is gone)`,
		a.newGossipKeyringSetCommand(),
		a.newGossipKeyringShowCommand(),
	)
}

func (a *app) newGossipKeyringSetCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:   "set FILE",
		Short: "Replace the gossip keyring with the keys in FILE",
		Long: `Replace the gossip keyring with the keys in FILE: one base64 key of 16, 24
or 32 bytes per line, the first one primary; blank lines and # comments are
ignored (the format of the nodes' --gossip-keyring file). Needs an operator
token. Only key fingerprints are printed.`,
		Example: "  head -c 32 /dev/urandom | base64 > gossip.keys\n  outpostctl node gossip-keyring set gossip.keys",
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := membership.LoadKeys(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: keys})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Gossip keyring set at revision %d: %s (primary first).\n", resp.GetRevision(), strings.Join(resp.GetFingerprints(), ", "))
				return err
			})
		},
	})
}

func (a *app) newGossipKeyringShowCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "show",
		Short:   "Show the fingerprints of the gossip keyring's keys",
		Example: "  outpostctl node gossip-keyring show",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.nodes.GetGossipKeyring(ctx, &outpostv1.GetGossipKeyringRequest{})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(resp.GetFingerprints()) == 0 {
					_, err := fmt.Fprintln(w, "No gossip keyring is set.")
					return err
				}
				_, err := fmt.Fprintf(w, "Gossip keyring (revision %d): %s (primary first).\n", resp.GetRevision(), strings.Join(resp.GetFingerprints(), ", "))
				return err
			})
		},
	})
}

// writeNodeTable writes the `node list` table.
func writeNodeTable(w io.Writer, resp *outpostv1.ListNodesResponse) error {
	if len(resp.GetNodes()) == 0 {
		_, err := fmt.Fprintln(w, "No edge nodes have connected yet.")
		return err
	}
	t := newTable(w, "NAME", "REGION", "HEALTH", "APPLIED-REVISION", "LAST-NACK", "DRAINING", "LAST-SEEN")
	for _, n := range resp.GetNodes() {
		t.row(n.GetName(), n.GetRegion(), enumName(n.GetHealth()),
			fmt.Sprintf("%d/%d", n.GetAppliedRevision(), resp.GetCurrentRevision()),
			truncate(nackSummary(n.GetLastNack()), 50), yesNo(n.GetDraining()), timestamp(n.GetLastSeen()))
	}
	return t.flush()
}

func writeNode(w io.Writer, n *outpostv1.Node) error {
	v := newDetails(w)
	v.field("Name", n.GetName())
	v.field("Region", n.GetRegion())
	location := "-"
	if l := n.GetLocation(); l != nil {
		location = fmt.Sprintf("%.4f, %.4f", l.GetLatitude(), l.GetLongitude())
	}
	v.field("Location", location)
	v.field("HTTP address", n.GetHttpAddress())
	v.field("HTTPS address", n.GetHttpsAddress())
	v.field("Health", enumName(n.GetHealth()))
	v.field("Draining", yesNo(n.GetDraining()))
	v.field("Applied revision", revision(n.GetAppliedRevision()))
	v.field("Last NACK", nackSummary(n.GetLastNack()))
	if t := n.GetLastNack().GetTime(); t != nil {
		v.field("Last NACK time", timestamp(t))
	}
	v.field("Last seen", timestamp(n.GetLastSeen()))
	v.field("Version", n.GetVersion())
	return v.flush()
}

// nackSummary renders the last refused revision and why.
func nackSummary(n *outpostv1.Nack) string {
	if n == nil || (n.GetRevision() == 0 && n.GetError() == "") {
		return "-"
	}
	return fmt.Sprintf("%d: %s", n.GetRevision(), n.GetError())
}
