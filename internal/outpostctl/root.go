// Package outpostctl is outpostctl, the admin command line of the Outpost CDN.
// Each command calls one RPC of the controller's gRPC admin API
// (proto/outpost/v1) and prints the response as a table for people or, with
// -o json, as the response message in protojson for scripts. A failure is one
// "Error: ..." line on stderr and exit status 1 (2 for a usage mistake).
package outpostctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/internal/apierr"
)

// Environment variables that stand in for global flags.
const (
	envController = "OUTPOST_CONTROLLER"
	envToken      = "OUTPOST_TOKEN"
	envTLSCA      = "OUTPOST_TLS_CA"
)

const (
	defaultController = "127.0.0.1:7000"
	defaultTimeout    = 10 * time.Second
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// annotationAPI marks commands that call the controller, so that the client
// is set up for them only: --help, completion and command groups never dial.
const annotationAPI = "outpostctl/api"

// Main runs outpostctl with its arguments (without the program name) and
// returns the exit status. An interrupt cancels the request in flight.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, stdout, stderr, os.Getenv)
}

// run is Main with its environment passed in, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{getenv: getenv}
	root := a.newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	a.close()
	if err == nil {
		return exitOK
	}
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintln(stderr, "Error: "+a.describe(cmd, err))
	if isUsageError(err) {
		return exitUsage
	}
	return exitError
}

// globalFlags are the flags every command has.
type globalFlags struct {
	controller    string
	token         string
	output        choiceValue
	timeout       time.Duration
	tls           bool
	plaintext     bool
	tlsCA         string
	tlsServerName string
}

// app is one run of outpostctl: its global flags and, once a command that
// calls the controller starts, the API client.
type app struct {
	getenv func(string) string
	flags  globalFlags
	api    *client
}

func (a *app) newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "outpostctl",
		Short: "Manage an Outpost CDN",
		Long: `outpostctl manages an Outpost CDN through its controller's admin API:
accelerated domains, their origins, HTTPS certificates and cache rules,
content refresh and prefetch, accounts and tokens, and edge nodes.

Connect with --controller (or $OUTPOST_CONTROLLER) and authenticate with
--token (or $OUTPOST_TOKEN); an account admin token manages that account's
domains, an operator token manages accounts, tokens and nodes.

Tables are for people. For scripts, -o json prints each response message as
JSON (protojson, unset fields left out); list commands print one response
holding every page.

Exit status: 0 on success, 1 when a request fails, 2 on a usage mistake.`,
		Example: `  export OUTPOST_CONTROLLER=controller.example.net:7000 OUTPOST_TOKEN=...
  outpostctl domain add cdn.example.com --origin domain:origin.example.com:443
  outpostctl domain list -o json | jq -r '.domains[].cname'
  outpostctl completion bash > /etc/bash_completion.d/outpostctl`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		Args:              groupArgs,
		RunE:              showHelp,
		PersistentPreRunE: a.setup,
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{err}
	})

	a.flags.output = choiceValue{value: outputTable, choices: []string{outputTable, outputJSON}}
	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.controller, "controller", defaultController, "controller gRPC address, HOST:PORT (env "+envController+")")
	pf.StringVar(&a.flags.token, "token", "", "bearer token (env "+envToken+")")
	pf.VarP(&a.flags.output, "output", "o", "output format: table or json")
	pf.DurationVar(&a.flags.timeout, "timeout", defaultTimeout, "time limit of each request to the controller")
	pf.BoolVar(&a.flags.tls, "tls", false, "connect with TLS (the default), trusting the system's root CAs unless --tls-ca is given")
	pf.StringVar(&a.flags.tlsCA, "tls-ca", "", "trust the CA certificates in this PEM `FILE` for the controller, such as the cluster CA from 'outpostctl pki ca' (env "+envTLSCA+")")
	pf.StringVar(&a.flags.tlsServerName, "tls-server-name", "", "server `NAME` to verify the controller's certificate against")
	pf.BoolVar(&a.flags.plaintext, "plaintext", false, "connect without TLS (the controller serves only TLS: for a TLS-terminating proxy on loopback)")
	_ = root.RegisterFlagCompletionFunc("output", fixedCompletion(a.flags.output.choices...))
	_ = root.MarkPersistentFlagFilename("tls-ca", "pem", "crt")

	root.AddCommand(
		a.newDomainCommand(),
		a.newOriginCommand(),
		a.newCertCommand(),
		a.newHTTPSCommand(),
		a.newCacheCommand(),
		a.newRefreshCommand(),
		a.newPrefetchCommand(),
		a.newTaskCommand(),
		a.newNodeCommand(),
		a.newKeyringCommand(),
		a.newAccountCommand(),
		a.newTokenCommand(),
		a.newWhoAmICommand(),
		a.newResolveCommand(),
		a.newPKICommand(),
	)
	return root
}

// setup completes the global flags from the environment, checks them and,
// for a command that calls the controller, creates the client.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	flags := cmd.Flags()
	if !flags.Changed("controller") {
		if v := strings.TrimSpace(a.getenv(envController)); v != "" {
			a.flags.controller = v
		}
	}
	if !flags.Changed("token") {
		a.flags.token = a.getenv(envToken)
	}
	if !flags.Changed("tls-ca") && !a.flags.plaintext {
		a.flags.tlsCA = strings.TrimSpace(a.getenv(envTLSCA))
	}
	if a.flags.plaintext && (a.flags.tls || a.flags.tlsCA != "" || a.flags.tlsServerName != "") {
		return usageErrorf("--plaintext excludes --tls, --tls-ca and --tls-server-name")
	}
	// Forgive a token pasted with its header scheme or read from a file
	// with its trailing newline.
	a.flags.token = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(a.flags.token), "Bearer "))
	if scheme, _, ok := strings.Cut(a.flags.controller, "://"); ok && (scheme == "http" || scheme == "https") {
		return usageErrorf("--controller takes the controller's gRPC address as HOST:PORT, not a URL (got %q)", a.flags.controller)
	}
	if a.flags.timeout <= 0 {
		return usageError{errors.New("--timeout must be positive")}
	}
	if cmd.Annotations[annotationAPI] == "" {
		return nil
	}
	c, err := dial(a.flags)
	if err != nil {
		return err
	}
	a.api = c
	return nil
}

func (a *app) close() {
	if a.api != nil {
		_ = a.api.close()
		a.api = nil
	}
}

// rpcContext bounds one request by --timeout.
func (a *app) rpcContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.flags.timeout)
}

// render prints a response in the chosen output format; table draws it for people.
func (a *app) render(cmd *cobra.Command, resp proto.Message, table func(io.Writer) error) error {
	return render(cmd.OutOrStdout(), a.flags.output.value, resp, table)
}

// describe renders err as the one line after "Error: ".
func (a *app) describe(cmd *cobra.Command, err error) string {
	msg := apierr.Describe(err)
	if isUsageError(err) {
		msg = fmt.Sprintf("%s (see '%s --help')", msg, cmd.CommandPath())
	} else if st, ok := status.FromError(err); ok && apierr.Reason(err) == "" {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			msg = fmt.Sprintf("%s (controller %s)", msg, a.flags.controller)
		}
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(msg)
}

// usageError is a mistake in how a command was invoked: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// cobraUsagePrefixes begin the usage errors cobra makes itself.
var cobraUsagePrefixes = []string{
	"required flag(s)",
	"if any flags in the group",
	"at least one of the flags in the group",
	"unknown command",
	"unknown flag",
	"unknown shorthand flag",
}

func isUsageError(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	if _, ok := status.FromError(err); ok {
		return false
	}
	for _, p := range cobraUsagePrefixes {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}

// groupArgs rejects an unknown subcommand of a command group.
func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		for i := range s {
			s[i] = strconv.Quote(s[i])
		}
		msg += "; did you mean " + orList(s) + "?"
	}
	return usageError{errors.New(msg)}
}

func showHelp(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// newGroup returns a command that only holds subcommands.
func newGroup(use, short, long string, subcommands ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  groupArgs,
		RunE:  showHelp,
	}
	cmd.AddCommand(subcommands...)
	return cmd
}

// apiCommand marks cmd as one that calls the controller and returns it.
func apiCommand(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annotationAPI] = "true"
	if cmd.ValidArgsFunction == nil {
		cmd.ValidArgsFunction = cobra.NoFileCompletions
	}
	return cmd
}

// exactArgs wants one positional argument per name, such as "NAME".
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErrorf("missing %s", names[len(args)])
		case len(args) > len(names):
			return usageErrorf("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}

// minArgs wants at least one positional argument, described by name.
func minArgs(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageErrorf("missing %s", name)
		}
		return nil
	}
}

// fixedCompletion completes a flag from a fixed list.
func fixedCompletion(choices ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(choices, cobra.ShellCompDirectiveNoFileComp)
}

// choiceValue is a string flag limited to a few values.
type choiceValue struct {
	value   string
	choices []string
}

func (c *choiceValue) Set(s string) error {
	for _, v := range c.choices {
		if s == v {
			c.value = s
			return nil
		}
	}
	return fmt.Errorf("want %s", orList(c.choices))
}

func (c *choiceValue) String() string { return c.value }
func (c *choiceValue) Type() string   { return strings.Join(c.choices, "|") }
