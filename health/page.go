package health

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// The operator's page: a static HTML page with its script and style, built
// into the binary, that polls /status. No build step, no external assets.
//
//go:embed ui/index.html ui/app.js ui/style.css
var ui embed.FS

// handlePage serves the page at / and its files under /ui/; any other path
// not registered on the mux is a 404.
func handlePage(mux *http.ServeMux) {
	files, err := fs.Sub(ui, "ui")
	if err != nil {
		panic("health: embedded page: " + err.Error()) // the embed directive guarantees it
	}
	static := http.StripPrefix("/ui/", http.FileServerFS(files))
	mux.Handle("/ui/", noCache(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // files only, no listing
			return
		}
		static.ServeHTTP(w, r)
	})))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, files, "index.html")
	})
}

// noCache makes browsers revalidate the page's files, so that a node
// upgraded in place serves its own script.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
