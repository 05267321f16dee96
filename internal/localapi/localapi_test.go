package localapi

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const envtestPkg = "sigs.k8s.io/controller-runtime/pkg/envtest"

// TestNoOtherEnvironments fails when any Go file of the repository makes an
// envtest.Environment that is not handed straight to New or Start of this package:
// such an API server would allocate ClusterIPs from envtest's private default range.
func TestNoOtherEnvironments(t *testing.T) {
	root := filepath.Join("..", "..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "bin" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		// This package is where environments are made; its test starts one plain
		// environment on purpose, to show CheckServiceRange refuses it.
		if !strings.HasSuffix(path, ".go") || filepath.Dir(path) == filepath.Join(root, "internal", "localapi") {
			return nil
		}
		for _, bad := range unwrappedEnvironments(t, path) {
			t.Errorf("%s: an envtest.Environment not passed to localapi.New or localapi.Start: its API server would use envtest's private Service range", bad)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("looked at only %d Go files under %s: the walk is broken", checked, root)
	}
}

// unwrappedEnvironments returns the positions of envtest.Environment literals (and
// new(envtest.Environment)) in a file that are not an argument of localapi.New/Start.
func unwrappedEnvironments(t *testing.T, path string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	envtestName, localapiName := "", ""
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		name := filepath.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		switch {
		case p == envtestPkg:
			envtestName = name
		case strings.HasSuffix(p, "/internal/localapi"):
			localapiName = name
		}
	}
	if envtestName == "" {
		return nil
	}
	isEnvironment := func(e ast.Expr) bool {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Environment" {
			return false
		}
		id, ok := sel.X.(*ast.Ident)
		return ok && id.Name == envtestName
	}
	wrapped := map[ast.Node]bool{}
	var found []ast.Node
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && localapiName != "" {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == localapiName && (sel.Sel.Name == "New" || sel.Sel.Name == "Start") {
					for _, arg := range n.Args {
						if u, ok := arg.(*ast.UnaryExpr); ok {
							arg = u.X
						}
						wrapped[arg] = true
					}
				}
			}
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "new" && len(n.Args) == 1 && isEnvironment(n.Args[0]) {
				found = append(found, n)
			}
		case *ast.CompositeLit:
			if isEnvironment(n.Type) {
				found = append(found, n)
			}
		}
		return true
	})
	var out []string
	for _, n := range found {
		if !wrapped[n] {
			out = append(out, fset.Position(n.Pos()).String())
		}
	}
	return out
}

// TestFindsUnwrappedEnvironments shows the check above catches each way of making an
// environment outside this package, and accepts the wrapped ones.
func TestFindsUnwrappedEnvironments(t *testing.T) {
	src := `package x

import (
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
)

var a = &envtest.Environment{}
var b = new(envtest.Environment)
var c = localapi.New(&envtest.Environment{CRDDirectoryPaths: nil})
var d = []*envtest.Environment{{}}
`
	path := filepath.Join(t.TempDir(), "x.go")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	got := unwrappedEnvironments(t, path)
	if len(got) != 2 {
		t.Fatalf("found %d unwrapped environments, want 2 (a and b): %v", len(got), got)
	}
	for i, line := range []string{":8:", ":9:"} {
		if !strings.Contains(got[i], line) {
			t.Errorf("finding %d at %s, want line %s", i, got[i], line)
		}
	}
}

// TestStartUsesLoopbackRange starts a real API server through Start and one the plain
// envtest way: the first allocates from ServiceCIDR, and CheckServiceRange refuses the
// second.
func TestStartUsesLoopbackRange(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run make test, or set it to "$(hack/envtest-assets.sh)"`)
	}
	ctx := context.Background()
	env := &envtest.Environment{}
	cfg, err := Start(ctx, env)
	if err != nil {
		t.Fatalf("starting through localapi: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	if err := CheckServiceRange(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	plain := &envtest.Environment{}
	plainCfg, err := plain.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Stop() })
	if err := CheckServiceRange(ctx, plainCfg); err == nil {
		t.Fatal("CheckServiceRange accepted an API server on envtest's default range 10.0.0.0/24")
	}
}
