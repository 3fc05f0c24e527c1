package outpostctl

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

const (
	envScheduler     = "OUTPOST_SCHEDULER"
	defaultScheduler = "127.0.0.1:7100"
)

func (a *app) newResolveCommand() *cobra.Command {
	var scheduler, clientIP string
	cmd := &cobra.Command{
		Use:   "resolve DOMAIN",
		Short: "Ask a scheduler which edge nodes serve a client",
		Long: `Ask a scheduler (not the controller) which edge nodes it would send a
client to for DOMAIN (an accelerated domain or its CNAME), best first, as
its DNS answers do. --client-ip places the client; without it the scheduler
uses the address this command connects from. Needs no token.`,
		Example: "  outpostctl resolve www.example.com --client-ip 203.0.113.7\n  outpostctl resolve www.example.com.cdn.outpost.test --scheduler sched.example.net:7100 -o json",
		Args:    exactArgs("DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr := scheduler
			if !cmd.Flags().Changed("scheduler") {
				if v := strings.TrimSpace(a.getenv(envScheduler)); v != "" {
					addr = v
				}
			}
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent("outpostctl"))
			if err != nil {
				return usageErrorf("scheduler address %q: %v", addr, err)
			}
			defer conn.Close()
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := outpostv1.NewSchedulerServiceClient(conn).Resolve(ctx, &outpostv1.ResolveRequest{Domain: args[0], ClientIp: clientIP})
			if st, ok := status.FromError(err); ok && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded) {
				return fmt.Errorf("%s: %s (scheduler %s)", st.Code(), st.Message(), addr)
			}
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeResolve(w, resp) })
		},
	}
	cmd.Flags().StringVar(&scheduler, "scheduler", defaultScheduler, "scheduler gRPC address, HOST:PORT (env "+envScheduler+")")
	cmd.Flags().StringVar(&clientIP, "client-ip", "", "the client's IP address")
	return cmd
}

func writeResolve(w io.Writer, resp *outpostv1.ResolveResponse) error {
	loc := resp.GetClientLocation()
	region := resp.GetClientRegion()
	if region == "" {
		region = "-"
	}
	fmt.Fprintf(w, "Client placed at %.4f, %.4f (region %s); answers live %ds.\n", loc.GetLatitude(), loc.GetLongitude(), region, resp.GetTtlSeconds())
	if len(resp.GetCandidates()) == 0 {
		fmt.Fprintln(w, "No edge node can serve it now.")
		return nil
	}
	t := newTable(w, "RANK", "NODE", "REGION", "DISTANCE-KM", "HTTP", "HTTPS")
	for i, c := range resp.GetCandidates() {
		t.row(fmt.Sprint(i+1), c.GetNode(), c.GetRegion(), fmt.Sprintf("%.0f", c.GetDistanceKm()), c.GetHttpAddress(), c.GetHttpsAddress())
	}
	return t.flush()
}
