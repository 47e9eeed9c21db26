package listenerx_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cloister-go/cloister/internal/listenerx"
	"github.com/cloister-go/cloister/listener"
)

type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) OnStateChange(from, to listener.State, s listener.Snapshot) {
	r.mu.Lock()
	r.got = append(r.got, string(from)+">"+string(to))
	r.mu.Unlock()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestMultiIsolatesPanics(t *testing.T) {
	r := &recorder{}
	m := listenerx.Multi{listener.Func(func(listener.State, listener.State, listener.Snapshot) { panic("x") }), r}
	m.OnStateChange("a", "b", listener.Snapshot{})
	if len(r.list()) != 1 {
		t.Fatal("second listener skipped after the first panicked")
	}
}

// The lists hold every State and RemovalReason constant package listener
// declares, in the order declared: metrics label their series with them.
func TestListsAreComplete(t *testing.T) {
	files, err := filepath.Glob("../../listener/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("listener sources: %v %v", files, err)
	}
	declared := map[string][]string{} // type name -> constant values, in order
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				id, ok := vs.Type.(*ast.Ident)
				if !ok {
					continue
				}
				for _, v := range vs.Values {
					lit, err := strconv.Unquote(v.(*ast.BasicLit).Value)
					if err != nil {
						t.Fatal(err)
					}
					declared[id.Name] = append(declared[id.Name], lit)
				}
			}
		}
	}
	var states, reasons []string
	for _, s := range listenerx.States() {
		states = append(states, string(s))
	}
	for _, r := range listenerx.RemovalReasons() {
		reasons = append(reasons, string(r))
	}
	if len(declared["State"]) == 0 || !slices.Equal(states, declared["State"]) {
		t.Errorf("States() gives %v, listener declares %v", states, declared["State"])
	}
	if len(declared["RemovalReason"]) == 0 || !slices.Equal(reasons, declared["RemovalReason"]) {
		t.Errorf("RemovalReasons() gives %v, listener declares %v", reasons, declared["RemovalReason"])
	}
}
