package outpostctl

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newRefreshCommand() *cobra.Command {
	kind := newEnumFlag(outpostv1.RefreshType_REFRESH_TYPE_FILE)
	cmd := &cobra.Command{
		Use:   "refresh URL... [--type file|directory|regex|ignore-params]",
		Short: "Purge cached content from the edge nodes",
		Long: `Purge cached objects from every edge node, so that the next request fetches
them from origin. Each argument is an absolute http:// or https:// URL on one
of your domains; by --type it names:
  file           an exact URL, query included (the default)
  directory      every URL under a path ending in "/", subdirectories included
  regex          the URLs whose path and query match a regular expression
                 (RE2 syntax), written after the host: https://HOST/REGEX
  ignore-params  an exact URL, whatever its query parameters
One request takes at most 1,000 URLs, 100 directories or 20 regular
expressions, and each account has a daily quota of each (see 'account get').
The refresh runs as a task; follow it with 'task get ID'.`,
		Example: `  outpostctl refresh https://cdn.example.com/index.html https://cdn.example.com/app.js
  outpostctl refresh --type directory https://cdn.example.com/images/
  outpostctl refresh --type regex 'https://cdn.example.com/img/.*\.png$'
  id=$(outpostctl refresh https://cdn.example.com/a.css -o json | jq -r .task.id)`,
		Args: minArgs("URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.content.RefreshObjects(ctx, &outpostv1.RefreshObjectsRequest{Type: kind.value, Entries: args})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeTaskStarted(w, resp.GetTask()) })
		},
	}
	cmd.Flags().Var(kind, "type", "what the arguments name")
	_ = cmd.RegisterFlagCompletionFunc("type", fixedCompletion(kind.choices()...))
	return apiCommand(cmd)
}

func (a *app) newPrefetchCommand() *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "prefetch URL... [--region REGION]",
		Short: "Load content into the edge caches ahead of demand",
		Long: `Make the edge nodes fetch these URLs from origin and cache them before users
ask for them: every node, or with --region only the nodes of that region. One
request takes at most 100 URLs, on your domains. The prefetch runs as a task;
follow it with 'task get ID'.`,
		Example: `  outpostctl prefetch https://cdn.example.com/release/app-2.0.tar.gz
  outpostctl prefetch --region eu-west https://cdn.example.com/video/intro.mp4`,
		Args: minArgs("URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.content.PrefetchObjects(ctx, &outpostv1.PrefetchObjectsRequest{Urls: args, Region: region})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeTaskStarted(w, resp.GetTask()) })
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "warm only the edge nodes of this `REGION`")
	return apiCommand(cmd)
}

func (a *app) newTaskCommand() *cobra.Command {
	cmd := newGroup("task", "Follow refresh and prefetch tasks",
		"Each refresh or prefetch request becomes a task delivered to every edge node.",
		a.newTaskListCommand(),
		a.newTaskGetCommand(),
	)
	cmd.Aliases = []string{"tasks"}
	return cmd
}

func (a *app) newTaskListCommand() *cobra.Command {
	var pageSize int32
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List refresh and prefetch tasks, newest first",
		Long: `List your account's refresh and prefetch tasks, newest first. PROGRESS is the
edge nodes that have done the task over the nodes it was sent to (those
connected when it was created). Tasks are kept for three days by default.`,
		Example: "  outpostctl task list\n  outpostctl task list -o json | jq -r '.tasks[] | select(.status != \"TASK_STATUS_COMPLETE\") | .id'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			tasks, err := listAll(cmd.Context(), a.flags.timeout, func(ctx context.Context, token string) ([]*outpostv1.Task, string, error) {
				resp, err := a.api.content.ListTasks(ctx, &outpostv1.ListTasksRequest{PageSize: pageSize, PageToken: token})
				return resp.GetTasks(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			resp := &outpostv1.ListTasksResponse{Tasks: tasks}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(tasks) == 0 {
					_, err := fmt.Fprintln(w, "No tasks.")
					return err
				}
				t := newTable(w, "ID", "KIND", "STATUS", "PROGRESS", "CREATED", "ENTRIES")
				for _, task := range tasks {
					t.row(task.GetId(), taskKind(task), enumName(task.GetStatus()),
						fmt.Sprintf("%d/%d", task.GetNodesDone(), task.GetNodesTotal()), timestamp(task.GetCreateTime()),
						strconv.Itoa(len(task.GetEntries())))
				}
				return t.flush()
			})
		},
	}
	pageSizeFlag(cmd, &pageSize)
	return apiCommand(cmd)
}

func (a *app) newTaskGetCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "get ID",
		Short:   "Show a refresh or prefetch task",
		Example: "  outpostctl task get task-18a2b3c4d5e6f708-3fa1",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.content.GetTask(ctx, &outpostv1.GetTaskRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error { return writeTask(w, resp.GetTask()) })
		},
	})
}

func writeTaskStarted(w io.Writer, t *outpostv1.Task) error {
	what := "URL"
	switch {
	case t.GetKind() == outpostv1.TaskKind_TASK_KIND_PREFETCH:
	case t.GetRefreshType() == outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY:
		what = "directory"
	case t.GetRefreshType() == outpostv1.RefreshType_REFRESH_TYPE_REGEX:
		what = "regular expression"
	}
	_, err := fmt.Fprintf(w, "Created %s task %s for %s.\nFollow it with 'outpostctl task get %s'.\n",
		taskKind(t), t.GetId(), plural(len(t.GetEntries()), what), t.GetId())
	return err
}

func writeTask(w io.Writer, t *outpostv1.Task) error {
	v := newDetails(w)
	v.field("ID", t.GetId())
	v.field("Kind", taskKind(t))
	if t.GetKind() == outpostv1.TaskKind_TASK_KIND_PREFETCH {
		region := t.GetRegion()
		if region == "" {
			region = "(every region)"
		}
		v.field("Region", region)
	} else {
		v.field("Type", enumName(t.GetRefreshType()))
	}
	v.field("Status", enumName(t.GetStatus()))
	v.field("Progress", fmt.Sprintf("%d of %d edge nodes done", t.GetNodesDone(), t.GetNodesTotal()))
	if t.GetError() != "" {
		v.field("Error", t.GetError())
	}
	v.field("Entries", t.GetEntries()...)
	v.field("Account", t.GetAccount())
	v.field("Created", timestamp(t.GetCreateTime()))
	v.field("Completed", timestamp(t.GetCompleteTime()))
	v.field("Revision", revision(t.GetRevision()))
	return v.flush()
}

func taskKind(t *outpostv1.Task) string { return enumName(t.GetKind()) }

// plural renders "1 URL", "3 URLs", "2 directories".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return strconv.Itoa(n) + " " + strings.TrimSuffix(noun, "y") + "ies"
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
