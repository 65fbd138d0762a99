package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"
)

// ErrInvalidConfig is wrapped by every error New returns for a Config it
// cannot use.
var ErrInvalidConfig = errors.New("console: invalid config")

// Defaults of Config.
const (
	DefaultInterval = 2 * time.Second
	DefaultWindow   = 10 * time.Minute
	DefaultTimeout  = 5 * time.Second
)

// Config configures a Console. Zero fields take their defaults.
type Config struct {
	// Backend gives the console its data. Required.
	Backend Backend
	// Admin offers to cancel jobs and replay dead letters, and accepts
	// those requests; without it the console is read-only and refuses
	// every POST with 403 Forbidden.
	Admin bool
	// Interval is how often Run samples the fleet for the charts.
	// Default DefaultInterval.
	Interval time.Duration
	// Window is the span the charts show, and the samples kept.
	// Default DefaultWindow.
	Window time.Duration
	// Timeout bounds each page's calls to the Backend. Default
	// DefaultTimeout.
	Timeout time.Duration
	// Clock tells the time. Default time.Now.
	Clock func() time.Time
	// Logger receives the console's logs. Default: discard.
	Logger *slog.Logger
}

// Console is the web console: an http.Handler serving its pages, and a
// sampler (Run) that feeds the charts. Safe for concurrent use.
type Console struct {
	cfg     Config
	hist    *history
	pages   map[string]*template.Template
	handler http.Handler
}

//go:embed assets
var assets embed.FS

// New returns a console for cfg. The error wraps ErrInvalidConfig.
func New(cfg Config) (*Console, error) {
	if cfg.Backend == nil {
		return nil, fmt.Errorf("%w: no Backend", ErrInvalidConfig)
	}
	if cfg.Interval < 0 || cfg.Window < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative Interval, Window or Timeout", ErrInvalidConfig)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Window < 2*cfg.Interval {
		return nil, fmt.Errorf("%w: Window %v holds fewer than 2 samples of Interval %v", ErrInvalidConfig, cfg.Window, cfg.Interval)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, hist: newHistory(int(cfg.Window/cfg.Interval)+1, cfg.Interval), pages: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/parts.html", "assets/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err) // programmer error: the templates are embedded
		}
		c.pages[name] = t
	}
	c.handler = http.NewCrossOriginProtection().Handler(c.routes())
	return c, nil
}

// Run samples the fleet every Interval for the charts until ctx ends, and
// returns nil then. A failed sample is logged and skipped.
func (c *Console) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.sample(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Debug("console: sample", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sample takes one sample of the fleet.
func (c *Console) sample(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	st, err := c.cfg.Backend.Status(ctx)
	if err != nil {
		return err
	}
	pipes, err := c.cfg.Backend.Pipelines(ctx)
	if err != nil {
		c.cfg.Logger.Debug("console: pipelines", "err", err)
	}
	c.hist.add(c.cfg.Clock(), st, pipes)
	return nil
}

// ServeHTTP serves the console's pages and assets.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.handler.ServeHTTP(w, r) }

// routes returns the console's routes.
func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets") // cannot fail: the directory is embedded
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", assetServer(static)))
	mux.HandleFunc("GET /{$}", c.fleetPage)
	mux.HandleFunc("GET /plugins", c.pluginsPage)
	mux.HandleFunc("GET /pipelines", c.pipelinesPage)
	mux.HandleFunc("GET /jobs", c.jobsPage)
	mux.HandleFunc("GET /jobs/{id}", c.jobPage)
	mux.HandleFunc("POST /jobs/{id}/cancel", c.cancelJob)
	mux.HandleFunc("GET /dead", c.deadPage)
	mux.HandleFunc("POST /dead/replay", c.replay)
	mux.HandleFunc("/", c.notFound)
	return secure(mux)
}

// assetServer serves the embedded CSS and script, cached briefly.
func assetServer(static fs.FS) http.Handler {
	files := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}

// secure sets the headers every response carries: nothing but the
// console's own script and styles runs, and no other site frames it.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	// Title is the page's title, Nav the menu entry it belongs to.
	Title, Nav string
	Admin      bool
	Now        time.Time
	// Problems are the Backend's errors, shown at the top.
	Problems []string
	// Flash is the outcome of an action just taken.
	Flash string
	// Static pages are not refreshed by the script: the outcome of an
	// action, an error.
	Static bool
	// Data is the page's own view.
	Data any
}

// fragmentHeader asks for the page's content alone (the script's refresh).
const fragmentHeader = "Df-Fragment"

// render writes template name with p, the whole page or only its content
// when the script asks.
func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, status int, p *page) {
	p.Admin, p.Now = c.cfg.Admin, c.cfg.Clock()
	tmpl := "layout"
	if r.Header.Get(fragmentHeader) != "" {
		tmpl = "content"
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, tmpl, p); err != nil {
		c.cfg.Logger.Error("console: render", "page", name, "err", err)
		http.Error(w, "console: cannot render this page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", fragmentHeader)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// ctx bounds a page's calls to the Backend.
func (c *Console) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), c.cfg.Timeout)
}

// problem turns a Backend error into a line for the page.
func problem(what string, err error) string {
	return fmt.Sprintf("Cannot read %s: %v", what, err)
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		c.forbidOrMethod(w, r)
		return
	}
	c.render(w, r, "notfound", http.StatusNotFound, &page{Title: "Not found", Data: r.URL.Path, Static: true})
}

// forbidOrMethod answers a request that changes something on a route that
// does not take it: 403 on a read-only console, 405 otherwise.
func (c *Console) forbidOrMethod(w http.ResponseWriter, r *http.Request) {
	if !c.cfg.Admin {
		c.forbidden(w, r)
		return
	}
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

// forbidden refuses an action on a read-only console.
func (c *Console) forbidden(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "notfound", http.StatusForbidden, &page{Title: "Read-only console", Static: true,
		Problems: []string{"This console is read-only: the daemon runs without --console-admin, so it cancels and replays nothing."}})
}
