package systemd_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// roles maps each environment-file example to the binary that reads it.
var roles = map[string]string{
	"controller.env.example": "outpost-controller",
	"node.env.example":       "outpost-node",
	"scheduler.env.example":  "outpost-scheduler",
	"etcd.env.example":       "outpost-etcd",
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	buildOut  []byte
)

// binaries builds the four binaries once per test binary and returns the
// directory holding them.
func binaries(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binaries")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "outpost-systemd-test")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		args := []string{"build", "-o", binDir + string(filepath.Separator)}
		for _, b := range roles {
			args = append(args, "../../cmd/"+b)
		}
		cmd := exec.CommandContext(ctx, goBin, args...)
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var helpCache sync.Map // binary name -> string

// help returns the binary's -h output.
func help(t *testing.T, binary string) string {
	t.Helper()
	if h, ok := helpCache.Load(binary); ok {
		return h.(string)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), binary), "-h")
	// -h must not depend on what the test's environment happens to set.
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, _ := cmd.CombinedOutput() // -h may exit non-zero
	if len(out) == 0 {
		t.Fatalf("%s -h printed nothing", binary)
	}
	helpCache.Store(binary, string(out))
	return string(out)
}

var assignment = regexp.MustCompile(`^#?\s*([A-Z][A-Z0-9_]*)=`)

// variables returns the variables a file assigns, commented-out
// placeholders included, with their line numbers.
func variables(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if m := assignment.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			vars[m[1]] = n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vars
}

// reads reports whether binary reads the environment variable name,
// judged by its -h output: Outpost's binaries name the variable of each
// flag there ("(env OUTPOST_LISTEN)"); etcd reads ETCD_<FLAG> for each of
// its --flags.
func reads(t *testing.T, binary, name string) bool {
	t.Helper()
	h := help(t, binary)
	if strings.HasPrefix(name, "ETCD_") && binary == "outpost-etcd" {
		flag := "--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "ETCD_")), "_", "-")
		return regexp.MustCompile(regexp.QuoteMeta(flag) + `\b`).MatchString(h)
	}
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`).MatchString(h)
}

func TestEnvExamples(t *testing.T) {
	examples, err := filepath.Glob("*.env.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(examples) != len(roles) {
		t.Fatalf("examples %v, want one per role %v", examples, roles)
	}
	for _, ex := range examples {
		binary, ok := roles[ex]
		if !ok {
			t.Errorf("%s: no binary known for it", ex)
			continue
		}
		vars := variables(t, ex)
		if len(vars) == 0 {
			t.Errorf("%s sets no variables", ex)
		}
		for name, line := range vars {
			if !strings.HasPrefix(name, "OUTPOST_") && !strings.HasPrefix(name, "ETCD_") {
				t.Errorf("%s:%d: %s is neither OUTPOST_* nor ETCD_*", ex, line, name)
				continue
			}
			if !reads(t, binary, name) {
				t.Errorf("%s:%d: %s is not read by %s (not in its -h output)", ex, line, name, binary)
			}
		}
	}
}

// unit is the few settings of a unit file this test checks.
type unit struct {
	execStart       string
	environmentFile string
	environment     []string // NAME=value
}

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var u unit
	for _, line := range strings.Split(string(b), "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(key, "#") {
			continue
		}
		switch key {
		case "ExecStart":
			u.execStart = strings.Fields(value)[0]
		case "EnvironmentFile":
			u.environmentFile = strings.TrimPrefix(value, "-")
		case "Environment":
			u.environment = append(u.environment, value)
		}
	}
	return u
}

func TestUnits(t *testing.T) {
	units, err := filepath.Glob("*.service")
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != len(roles) {
		t.Fatalf("units %v, want one per role", units)
	}
	for _, path := range units {
		u := parseUnit(t, path)
		binary := filepath.Base(u.execStart)
		if want := strings.TrimSuffix(path, ".service"); binary != want {
			t.Errorf("%s: ExecStart runs %s, want %s", path, u.execStart, want)
		}
		if _, err := os.Stat(filepath.Join("../../cmd", binary, "main.go")); err != nil {
			t.Errorf("%s: ExecStart binary %s is not built from cmd/: %v", path, binary, err)
		}
		example := strings.TrimPrefix(filepath.Base(u.environmentFile), "") + ".example"
		if _, err := os.Stat(example); err != nil || !strings.HasPrefix(u.environmentFile, "/etc/outpost/") {
			t.Errorf("%s: EnvironmentFile=%s has no example %s here", path, u.environmentFile, example)
		} else if roles[example] != binary {
			t.Errorf("%s: EnvironmentFile=%s is the example of %s", path, u.environmentFile, roles[example])
		}
		for _, env := range u.environment {
			name, _, _ := strings.Cut(env, "=")
			if !reads(t, binary, name) {
				t.Errorf("%s: Environment=%s: %s does not read %s", path, env, binary, name)
			}
		}
	}
}

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` on each unit,
// with ExecStart pointed at the freshly built binary (verify checks that
// the command exists). Skipped where systemd-analyze is not installed.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	bins := binaries(t)
	units, err := filepath.Glob("*.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, path := range units {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("ExecStart=/usr/local/bin/"), []byte("ExecStart="+bins+"/"))
		tmp := filepath.Join(dir, path)
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", tmp).CombinedOutput()
		cancel()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
		}
	}
}
