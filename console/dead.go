package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/dataflare/dataflare/client"
)

// replayTimeout bounds a replay the console runs: it waits for the new
// jobs' results to report them.
const replayTimeout = 2 * time.Minute

// deadView is the dead-letters page.
type deadView struct {
	// Job is the job the page is filtered to, "" for all.
	Job    string
	Errors []errorGroup
	Rows   []deadRow
	// Jobs are the jobs the dead letters came from, for the replay
	// buttons, in the order of first appearance.
	Jobs []string
	// Limit is how many the page asked for; Full says the list reached it.
	Limit int
	Full  bool
}

// deadLimit is how many dead letters the page lists.
const deadLimit = 200

func (c *Console) deadPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	job := r.URL.Query().Get("job")
	p := &page{Title: "Dead letters", Nav: "dead"}
	v := &deadView{Job: job, Limit: deadLimit}
	dead, err := c.cfg.Backend.DeadLetters(ctx, client.DeadFilter{Job: job, All: job == "", Limit: deadLimit})
	if err != nil {
		p.Problems = append(p.Problems, problem("the dead letters", err))
	}
	v.Full = len(dead) == deadLimit
	for _, d := range dead {
		v.Rows = append(v.Rows, newDeadRow(c.cfg.Clock(), d))
		if !slices.Contains(v.Jobs, d.Job) {
			v.Jobs = append(v.Jobs, d.Job)
		}
	}
	v.Errors = groupErrors(dead)
	p.Data = v
	c.render(w, r, "dead", http.StatusOK, p)
}

// replayView is the outcome of a replay.
type replayView struct {
	Job    string
	Report *client.ReplayReport
	Rows   []replayRow
}

// replayRow is one record replayed.
type replayRow struct {
	client.ReplayRecord
	Preview string
	Error   string
}

func (c *Console) replay(w http.ResponseWriter, r *http.Request) {
	if !c.cfg.Admin {
		c.forbidden(w, r)
		return
	}
	job := r.FormValue("job")
	p := &page{Title: "Replay of " + job, Nav: "dead", Static: true}
	if job == "" {
		p.Problems = append(p.Problems, "Replay needs the job whose dead letters to run again.")
		c.render(w, r, "notfound", http.StatusBadRequest, p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), replayTimeout)
	defer cancel()
	rep, err := c.cfg.Backend.Replay(ctx, client.ReplaySpec{Job: job})
	status := http.StatusOK
	if err != nil {
		status = http.StatusBadGateway
		if errors.Is(err, client.ErrInvalid) || errors.Is(err, client.ErrJobNotFound) {
			status = http.StatusBadRequest
		}
		p.Problems = append(p.Problems, fmt.Sprintf("The replay of job %s failed: %v", job, err))
	}
	v := &replayView{Job: job, Report: rep}
	if rep != nil {
		for _, rec := range rep.Records {
			row := replayRow{ReplayRecord: rec, Preview: string(rec.Value)}
			if !isText(rec.Value) {
				row.Preview = fmt.Sprintf("%q", rec.Value)
			}
			if rec.Err != nil {
				row.Error = rec.Err.Error()
			}
			v.Rows = append(v.Rows, row)
		}
	}
	p.Data = v
	c.render(w, r, "replay", status, p)
}
