package apicheck

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/api.txt from the current source")

// golden is the listing of the public API, one exported name per line.
const golden = "testdata/api.txt"

// private lists the top-level folders whose packages are not part of the public API.
var private = map[string]bool{"internal": true, "tests": true, "examples": true, "bench": true, "cmd": true, "docker": true, "docs": true, "testdata": true}

// TestAPI lists the exported names of every public package and compares the listing with the
// golden file, so that an API change is a visible diff of testdata/api.txt.
func TestAPI(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	lines, err := listAPI(root)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(lines, "\n") + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d exported names and methods (%d lines with fields and interface methods)", golden, countNames(lines), len(lines))
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/apicheck -update)", err)
	}
	if got != string(want) {
		t.Errorf("the public API differs from %s; if the change is intended, run go test ./internal/apicheck -update and commit the file.\n%s",
			golden, diff(strings.Split(strings.TrimSuffix(string(want), "\n"), "\n"), lines))
	}
	t.Logf("%d exported names and methods (%d lines with fields and interface methods) in %d public packages",
		countNames(lines), len(lines), countPackages(lines))
}

// TestListAPI checks the lister on a small package written for the purpose, so that the golden
// comparison above cannot pass by listing nothing.
func TestListAPI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n")
	write("m.go", `package m

const A, b = 1, 2
const C int = 3
var V, w string
type T struct {
	X, y int
	Embedded
	*Ptr
	z bool
}
type Embedded struct{}
type Ptr struct{}
type u struct{ X int }
type I interface {
	M(a int) (string, error)
	m()
	Embedded2
}
type Embedded2 interface{ N() }
type G[K comparable] struct{ Key K }
type Alias = T
func F(a, b int, c ...string) error { return nil }
func f() {}
func (T) M() {}
func (*T) P(x int) {}
func (T) p() {}
func (u) M() {}
func (G[K]) Get() K { var k K; return k }
`)
	write("m_test.go", "package m\n\nfunc TestOnly() {}\n")
	write("internal/x/x.go", "package x\n\nfunc Hidden() {}\n")
	write("sub/s.go", "package s\n\n// Doc.\nfunc S() {}\n")
	got, err := listAPI(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedLines(
		"m: const A",
		"m: const C int",
		"m: func F(int, int, ...string) error",
		"m: type Alias = T",
		"m: type Embedded struct",
		"m: type Embedded2 interface",
		"m: type Embedded2 interface N()",
		"m: type G[K comparable] struct",
		"m: type G field Key K",
		"m: type G method (G[K]) Get() K",
		"m: type I interface",
		"m: type I interface Embedded2",
		"m: type I interface M(int) (string, error)",
		"m: type Ptr struct",
		"m: type T struct",
		"m: type T field *Ptr",
		"m: type T field Embedded",
		"m: type T field X int",
		"m: type T method (*T) P(int)",
		"m: type T method (T) M()",
		"m: var V string",
		"m/sub: func S()",
	)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("listing differs:\n%s", diff(want, got))
	}
}

// listAPI returns the sorted listing of the exported names of every public package under root.
func listAPI(root string) ([]string, error) {
	modPath, err := modulePath(root)
	if err != nil {
		return nil, err
	}
	short := modPath[strings.LastIndex(modPath, "/")+1:]
	var lines []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		name := d.Name()
		if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "internal") {
			return filepath.SkipDir
		}
		if rel != "." {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		if top, _, _ := strings.Cut(rel, "/"); private[top] {
			return filepath.SkipDir
		}
		pkg := short
		if rel != "." {
			pkg = short + "/" + rel
		}
		pl, err := packageAPI(path, pkg)
		if err != nil {
			return err
		}
		lines = append(lines, pl...)
		return nil
	})
	sort.Strings(lines)
	return lines, err
}

func modulePath(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("no module line in %s/go.mod", root)
}

// packageAPI lists the exported names of the package in dir (its non-test files for this platform).
func packageAPI(dir, pkg string) ([]string, error) {
	bp, err := build.Default.ImportDir(dir, 0)
	if err != nil {
		if _, ok := err.(*build.NoGoError); ok {
			return nil, nil
		}
		return nil, err
	}
	if bp.Name == "main" {
		return nil, nil
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range bp.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	l := lister{fset: fset, pkg: pkg}
	for _, f := range files {
		for _, decl := range f.Decls {
			l.decl(decl)
		}
	}
	return l.lines, nil
}

type lister struct {
	fset  *token.FileSet
	pkg   string
	lines []string
}

func (l *lister) add(format string, args ...any) {
	l.lines = append(l.lines, l.pkg+": "+fmt.Sprintf(format, args...))
}

func (l *lister) decl(decl ast.Decl) {
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() {
			return
		}
		if d.Recv == nil {
			l.add("func %s%s", d.Name.Name, l.signature(d.Type))
			return
		}
		recv := d.Recv.List[0].Type
		base := recv
		if s, ok := base.(*ast.StarExpr); ok {
			base = s.X
		}
		switch b := base.(type) {
		case *ast.IndexExpr:
			base = b.X
		case *ast.IndexListExpr:
			base = b.X
		}
		id, ok := base.(*ast.Ident)
		if !ok || !id.IsExported() {
			return
		}
		l.add("type %s method (%s) %s%s", id.Name, l.expr(recv), d.Name.Name, l.signature(d.Type))
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.ValueSpec:
				kind := "var"
				if d.Tok == token.CONST {
					kind = "const"
				}
				for _, n := range s.Names {
					if !n.IsExported() {
						continue
					}
					if s.Type != nil {
						l.add("%s %s %s", kind, n.Name, l.expr(s.Type))
					} else {
						l.add("%s %s", kind, n.Name)
					}
				}
			case *ast.TypeSpec:
				if s.Name.IsExported() {
					l.typeSpec(s)
				}
			}
		}
	}
}

func (l *lister) typeSpec(s *ast.TypeSpec) {
	name := s.Name.Name
	head := name
	if s.TypeParams != nil {
		head += "[" + l.fields(s.TypeParams, true) + "]"
	}
	if s.Assign.IsValid() {
		l.add("type %s = %s", head, l.expr(s.Type))
		return
	}
	switch t := s.Type.(type) {
	case *ast.StructType:
		l.add("type %s struct", head)
		for _, f := range t.Fields.List {
			typ := l.expr(f.Type)
			if len(f.Names) == 0 { // embedded: exported when its type name is
				if ast.IsExported(embeddedName(f.Type)) {
					l.add("type %s field %s", name, typ)
				}
				continue
			}
			for _, n := range f.Names {
				if n.IsExported() {
					l.add("type %s field %s %s", name, n.Name, typ)
				}
			}
		}
	case *ast.InterfaceType:
		l.add("type %s interface", head)
		for _, m := range t.Methods.List {
			if len(m.Names) == 0 {
				l.add("type %s interface %s", name, l.expr(m.Type))
				continue
			}
			for _, n := range m.Names {
				if n.IsExported() {
					l.add("type %s interface %s%s", name, n.Name, l.signature(m.Type.(*ast.FuncType)))
				}
			}
		}
	default:
		l.add("type %s %s", head, l.expr(s.Type))
	}
}

func embeddedName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return embeddedName(t.X)
	case *ast.SelectorExpr:
		return t.Sel.Name
	case *ast.IndexExpr:
		return embeddedName(t.X)
	case *ast.IndexListExpr:
		return embeddedName(t.X)
	case *ast.Ident:
		return t.Name
	}
	return ""
}

// signature prints a function type without parameter names, so that renaming a parameter is not
// an API change.
func (l *lister) signature(ft *ast.FuncType) string {
	s := "(" + l.fields(ft.Params, false) + ")"
	if ft.Results == nil || len(ft.Results.List) == 0 {
		return s
	}
	res := l.fields(ft.Results, false)
	if len(ft.Results.List) == 1 && len(ft.Results.List[0].Names) <= 1 {
		return s + " " + res
	}
	return s + " (" + res + ")"
}

// fields prints a field list as types only (named, for type parameters).
func (l *lister) fields(fl *ast.FieldList, named bool) string {
	if fl == nil {
		return ""
	}
	var parts []string
	for _, f := range fl.List {
		typ := l.expr(f.Type)
		n := max(len(f.Names), 1)
		if named {
			var names []string
			for _, id := range f.Names {
				names = append(names, id.Name)
			}
			parts = append(parts, strings.Join(names, ", ")+" "+typ)
			continue
		}
		for range n {
			parts = append(parts, typ)
		}
	}
	return strings.Join(parts, ", ")
}

func (l *lister) expr(e ast.Expr) string {
	var b bytes.Buffer
	if err := printer.Fprint(&b, l.fset, e); err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	// Collapse struct and interface literals spread over lines into one line.
	return strings.Join(strings.Fields(b.String()), " ")
}

func sortedLines(lines ...string) []string {
	sort.Strings(lines)
	return lines
}

// countNames counts the top-level names and methods, leaving out struct fields and interface
// methods (the measure the project's surface target is set in).
func countNames(lines []string) int {
	n := 0
	for _, l := range lines {
		_, rest, _ := strings.Cut(l, ": ")
		f := strings.Fields(rest)
		if len(f) >= 4 && f[0] == "type" && (f[2] == "field" || (f[2] == "interface" && len(f) > 3)) {
			continue
		}
		n++
	}
	return n
}

func countPackages(lines []string) int {
	seen := map[string]bool{}
	for _, l := range lines {
		p, _, _ := strings.Cut(l, ":")
		seen[p] = true
	}
	return len(seen)
}

// diff lists the lines only in want (-) and only in got (+); both are sorted.
func diff(want, got []string) string {
	var b strings.Builder
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || (i < len(want) && want[i] < got[j]):
			fmt.Fprintf(&b, "- %s\n", want[i])
			i++
		case i == len(want) || got[j] < want[i]:
			fmt.Fprintf(&b, "+ %s\n", got[j])
			j++
		default:
			i++
			j++
		}
	}
	return b.String()
}
