package benchsuite

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmoke runs the real outpost-bench command line with -quick on the
// scheduler's DNS benchmark (about 3 s on a quiet machine, more while
// the rest of go test ./... builds and runs beside it), into a temporary
// document. It needs OUTPOST_BENCH_SMOKE=1:
//
//	OUTPOST_BENCH_SMOKE=1 go test ./internal/benchsuite -run TestSmoke -v
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if os.Getenv("OUTPOST_BENCH_SMOKE") != "1" {
		t.Skip("set OUTPOST_BENCH_SMOKE=1 to run the real suite on one cheap scenario")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "benchmarks.md")
	if err := os.WriteFile(out, []byte("# Benchmarks\n\nIntro.\n\n## Kept\n\nAs it was.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-quick", "-only", "^Scheduler DNS", "-timeout", "2m", "-out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit status %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(md)
	for _, want := range []string{
		"# Benchmarks\n\nIntro.\n\n" + BeginMarker,
		EndMarker + "\n\n## Kept\n\nAs it was.\n",
		"| Scheduler DNS over UDP with ECS: rate per core | ",
		"| Scheduler gRPC Resolve: rate per core | — | — | — | rate per core ≥ 10,000 calls/s | not run (-only) |",
		"Reproduce: `make bench BENCHFLAGS=\"-only '^Scheduler DNS' -quick -timeout 2m0s\"`",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the document lacks %q:\n%s", want, doc)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "benchmarks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, o := range rep.Rows {
		if strings.HasPrefix(o.Scenario, "Scheduler DNS") {
			if o.Status != StatusOK || o.Outpost == nil || o.Outpost.Median <= 0 || (o.Met != MetYes && o.Met != MetNo) {
				t.Errorf("%s: %+v", o.Scenario, o)
			}
		}
	}
	if !rep.Quick || rep.Machine.Cores == 0 || rep.Machine.Go == "" {
		t.Errorf("report: quick %v, machine %+v", rep.Quick, rep.Machine)
	}
}
