package console

import (
	"net/http"
	"time"
)

func (c *Console) fleetPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	p := &page{Title: "Fleet", Nav: "fleet"}
	st, err := c.cfg.Backend.Status(ctx)
	if err != nil {
		p.Problems = append(p.Problems, problem("the fleet's status", err))
		c.render(w, r, "fleet", http.StatusServiceUnavailable, p)
		return
	}
	p.Data = newFleetView(c.cfg.Clock(), c.cfg.Window, c.gap(), st, c.hist.samples())
	c.render(w, r, "fleet", http.StatusOK, p)
}

func (c *Console) pluginsPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	p := &page{Title: "Plugins", Nav: "plugins"}
	st, err := c.cfg.Backend.Status(ctx)
	if err != nil {
		p.Problems = append(p.Problems, problem("the fleet's status", err))
		st = nil
	}
	mods, err := c.cfg.Backend.Modules(ctx)
	if err != nil {
		p.Problems = append(p.Problems, problem("the plugin store", err))
	}
	p.Data = newPluginsView(st, mods, c.hist.samples())
	c.render(w, r, "plugins", http.StatusOK, p)
}

func (c *Console) pipelinesPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	p := &page{Title: "Pipelines", Nav: "pipelines"}
	pipes, err := c.cfg.Backend.Pipelines(ctx)
	if err != nil {
		p.Problems = append(p.Problems, problem("the pipelines", err))
	}
	p.Data = newPipelinesView(c.cfg.Clock(), c.cfg.Window, c.gap(), pipes, c.hist.samples())
	c.render(w, r, "pipelines", http.StatusOK, p)
}

// gap is the time between samples beyond which a chart's line breaks:
// samples were missed (the backend did not answer for a while).
func (c *Console) gap() time.Duration { return 5*c.cfg.Interval + time.Second }
