// Package deploy holds tcptrace's deployment files: the container image
// build, the Kubernetes DaemonSet, the Prometheus scrape config and
// alerts, and the Grafana dashboard. Its tests check them against the
// exporter and the tools that read them.
package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tcptrace/tcptrace/internal/metrics"
	"github.com/tcptrace/tcptrace/internal/testutil/promtest"
)

// docs decodes every YAML document of a file.
func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
}

// get walks a decoded document: get(d, "spec", "template", 0, "name").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, x := range get(v).([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestDaemonSet(t *testing.T) {
	kinds := map[string]map[string]any{}
	for _, d := range docs(t, "kubernetes/daemonset.yaml") {
		kinds[d["kind"].(string)] = d
	}
	ds := kinds["DaemonSet"]
	if ds == nil || kinds["ServiceAccount"] == nil || kinds["Service"] == nil || kinds["Namespace"] == nil {
		t.Fatalf("want Namespace, ServiceAccount, DaemonSet and Service, got %v", slices.Collect(maps.Keys(kinds)))
	}
	pod := get(ds, "spec", "template", "spec")
	if get(pod, "hostPID") != true || get(pod, "hostNetwork") != true {
		t.Error("the pod needs hostPID (every process, so every namespace) and hostNetwork (the node's namespace as its own)")
	}
	if get(pod, "automountServiceAccountToken") != false {
		t.Error("tcptrace never calls the Kubernetes API: no service account token")
	}
	c := get(pod, "containers", 0)
	sc := get(c, "securityContext")
	if get(sc, "privileged") == true {
		t.Error("the container must not be privileged")
	}
	add := strs(get(sc, "capabilities", "add"))
	for _, want := range []string{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "SYSLOG"} {
		if !slices.Contains(add, want) {
			t.Errorf("capability %s missing from %v", want, add)
		}
	}
	if drop := strs(get(sc, "capabilities", "drop")); !slices.Contains(drop, "ALL") {
		t.Errorf("capabilities drop %v, want ALL", drop)
	}
	for _, k := range []string{"allowPrivilegeEscalation"} {
		if get(sc, k) != false {
			t.Errorf("securityContext.%s must be false", k)
		}
	}
	if get(sc, "readOnlyRootFilesystem") != true {
		t.Error("the root filesystem should be read-only")
	}
	for _, r := range [][]any{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
		if get(c, append([]any{"resources"}, r...)...) == nil {
			t.Errorf("resources.%s.%s missing", r[0], r[1])
		}
	}
	if get(c, "image") == nil {
		t.Error("no image")
	}
	args := strs(get(c, "args"))
	i := slices.Index(args, "--metrics")
	if i < 0 || i+1 >= len(args) || !slices.Contains(args, "--all-netns") {
		t.Fatalf("args %v: want --metrics ADDR and --all-netns", args)
	}
	addr, err := metrics.ListenAddr(args[i+1])
	if err != nil || !strings.HasSuffix(addr, ":9877") || strings.HasPrefix(addr, "127.") {
		t.Errorf("--metrics %s (%s, %v): want all addresses, port 9877, for Prometheus to reach", args[i+1], addr, err)
	}
	if get(c, "ports", 0, "containerPort") != 9877 ||
		get(ds, "spec", "template", "metadata", "annotations", "prometheus.io/port") != "9877" {
		t.Error("the container port and the prometheus.io/port annotation must be 9877")
	}
	mounts := map[string]any{}
	for _, m := range get(c, "volumeMounts").([]any) {
		mounts[get(m, "mountPath").(string)] = get(m, "readOnly")
	}
	for _, p := range []string{"/sys/kernel/btf", "/run/netns"} {
		if ro, ok := mounts[p]; !ok || ro != true {
			t.Errorf("%s must be mounted read-only (mounts %v)", p, mounts)
		}
	}
	if sel := get(kinds["Service"], "spec", "selector", "app.kubernetes.io/name"); sel != get(ds, "spec", "template", "metadata", "labels", "app.kubernetes.io/name") {
		t.Errorf("the service selects %v, not the DaemonSet's pods", sel)
	}
}

func TestPrometheusFiles(t *testing.T) {
	promtest.Check(t, nil, "check", "config", "prometheus/prometheus.yml")
	promtest.Check(t, nil, "check", "rules", "prometheus/tcptrace-rules.yml")
	// The PrometheusRule carries the very same groups: extract them and
	// let promtool check them as a rules file too.
	plain := docs(t, "prometheus/tcptrace-rules.yml")[0]
	crd := docs(t, "kubernetes/prometheusrule.yaml")[0]
	if crd["kind"] != "PrometheusRule" || get(crd, "apiVersion") != "monitoring.coreos.com/v1" {
		t.Fatalf("prometheusrule.yaml is a %v %v", get(crd, "apiVersion"), crd["kind"])
	}
	groups := get(crd, "spec", "groups")
	if !reflect.DeepEqual(groups, plain["groups"]) {
		t.Error("kubernetes/prometheusrule.yaml and prometheus/tcptrace-rules.yml have different groups")
	}
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	extracted := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(extracted, b, 0o644); err != nil {
		t.Fatal(err)
	}
	promtest.Check(t, nil, "check", "rules", extracted)
	// The alerts the issue asks for.
	var alerts []string
	for _, r := range get(plain, "groups", 0, "rules").([]any) {
		alerts = append(alerts, get(r, "alert").(string))
	}
	for _, want := range []string{"TcptraceCloseWaitLeakGrowing", "TcptracePortExhaustion", "TcptraceEventsDropped"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no %s alert in %v", want, alerts)
		}
	}
	for _, r := range get(plain, "groups", 0, "rules").([]any) {
		if get(r, "alert") == "TcptraceCloseWaitLeakGrowing" && get(r, "for") != "10m" {
			t.Errorf("the CLOSE_WAIT alert fires after %v, want 10m", get(r, "for"))
		}
	}
}

// served lists the metrics the exporter serves, with their labels:
// tcptrace's own and the Go runtime's and the process's.
func served(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, f := range metrics.Families() {
		out[f.Name] = f.Labels
	}
	mfs, err := metrics.Registry(metrics.New(metrics.Config{})).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, ok := out[mf.GetName()]; !ok {
			out[mf.GetName()] = nil
		}
	}
	return out
}

var (
	// A metric name in PromQL: an identifier not followed by "(" (a
	// function) and not a keyword.
	identRe    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	selectorRe = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	matcherRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	groupingRe = regexp.MustCompile(`\b(?:by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
)

// exprNames returns the metric names an expression reads, and for each
// the label names its selectors and groupings use.
func exprNames(expr string) map[string][]string {
	// Drop strings and Grafana variables before looking for names.
	clean := regexp.MustCompile(`"[^"]*"`).ReplaceAllString(expr, `""`)
	out := map[string][]string{}
	for _, m := range selectorRe.FindAllStringSubmatch(clean, -1) {
		for _, l := range matcherRe.FindAllStringSubmatch(m[2], -1) {
			out[m[1]] = append(out[m[1]], l[1])
		}
	}
	for _, loc := range identRe.FindAllStringIndex(clean, -1) {
		name := clean[loc[0]:loc[1]]
		rest := strings.TrimLeft(clean[loc[1]:], " ")
		if strings.HasPrefix(rest, "(") || !strings.ContainsAny(name, "_") && name != "up" {
			continue // a function, a keyword or a number's exponent
		}
		if before := clean[:loc[0]]; strings.HasSuffix(strings.TrimRight(before, " "), "(") && groupingRe.MatchString(before+name+")") {
			continue
		}
		if _, ok := out[name]; !ok && strings.HasPrefix(name, "tcptrace_") || strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			out[name] = append(out[name], []string{}...)
		}
	}
	// Label names in groupings are not metric names.
	for _, g := range groupingRe.FindAllStringSubmatch(clean, -1) {
		for _, l := range strings.Split(g[1], ",") {
			delete(out, strings.TrimSpace(l))
		}
	}
	return out
}

// checkUses reports each metric or label an expression uses that the
// exporter does not serve.
func checkUses(t *testing.T, where, expr string, have map[string][]string) {
	t.Helper()
	for _, p := range problems(where, expr, have) {
		t.Error(p)
	}
}

func problems(where, expr string, have map[string][]string) []string {
	var out []string
	names := exprNames(expr)
	if len(names) == 0 {
		out = append(out, fmt.Sprintf("%s: no metric found in %q", where, expr))
	}
	for name, labels := range names {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok {
				if _, isHist := have[b]; isHist {
					base = b
				}
			}
		}
		served, ok := have[base]
		if !ok {
			out = append(out, fmt.Sprintf("%s: %s is not a metric tcptrace serves (in %q)", where, name, expr))
			continue
		}
		for _, l := range labels {
			// instance and job are Prometheus's; le is a histogram's.
			if l != "instance" && l != "job" && l != "le" && l != "node" && !slices.Contains(served, l) {
				out = append(out, fmt.Sprintf("%s: %s has no label %q (it has %v)", where, name, l, served))
			}
		}
	}
	return out
}

func TestDashboardAndAlertsUseServedMetrics(t *testing.T) {
	have := served(t)
	b, err := os.ReadFile("grafana/tcptrace-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if len(dash.Panels) < 8 {
		t.Errorf("%d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkUses(t, "dashboard panel "+p.Title, tg.Expr, have)
		}
	}
	for _, v := range dash.Templating.List {
		if m := regexp.MustCompile(`label_values\((.*),\s*(\w+)\)$`).FindStringSubmatch(v.Definition); m != nil {
			checkUses(t, "dashboard variable "+v.Name, m[1], have)
			if fam := exprNames(m[1]); len(fam) == 1 {
				for name := range fam {
					if m[2] != "instance" && !slices.Contains(have[name], m[2]) {
						t.Errorf("variable %s: %s has no label %s", v.Name, name, m[2])
					}
				}
			}
		}
	}
	for _, r := range get(docs(t, "prometheus/tcptrace-rules.yml")[0], "groups", 0, "rules").([]any) {
		checkUses(t, "alert "+get(r, "alert").(string), get(r, "expr").(string), have)
	}
}

// The checker itself catches a name the exporter does not serve.
func TestCheckUsesCatches(t *testing.T) {
	have := served(t)
	for _, bad := range []string{
		`rate(tcptrace_time_wait_total[5m])`,
		`sum by (state) (tcptrace_sockets{netns="1", pod="x"})`,
	} {
		if len(problems("test", bad, have)) == 0 {
			t.Errorf("%q passed the check", bad)
		}
	}
}

// The image's build: a static binary from scripts/build-static.sh, on a
// small base. Docker is not needed to check what it would do.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from []string
	var runs, entry string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			from = append(from, f[1])
		case "RUN":
			runs += line + "\n"
		case "ENTRYPOINT":
			entry = line
		}
	}
	if len(from) < 2 {
		t.Fatalf("FROM %v: want a multi-stage build", from)
	}
	if last := from[len(from)-1]; !strings.Contains(last, "distroless/static") && last != "scratch" {
		t.Errorf("final stage FROM %s: want a small static base (distroless/static or scratch)", last)
	}
	if !strings.Contains(runs, "scripts/build-static.sh") {
		t.Error("the image does not build with scripts/build-static.sh")
	}
	if !strings.Contains(entry, "tcptrace") {
		t.Errorf("ENTRYPOINT %q", entry)
	}
	// Build the binary as the image does, and check it is static.
	out := filepath.Join(t.TempDir(), "tcptrace")
	cmd := exec.Command("sh", "scripts/build-static.sh", out, "test")
	cmd.Dir = ".."
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-static.sh: %v\n%s", err, o)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	v, err := exec.Command(out, "--version").Output()
	if err != nil || !bytes.Contains(v, []byte("tcptrace test")) {
		t.Errorf("--version: %q, %v", v, err)
	}
}
