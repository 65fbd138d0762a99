package console

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
)

// maxDetailed bounds the unfinished jobs whose live counts the jobs page
// asks for, one request each.
const maxDetailed = 25

// jobRow is one job on the jobs page or its own.
type jobRow struct {
	client.JobInfo
	// What names its plugin, or its chain of steps.
	What string
	// Class is its state badge's colour; Active says it is unfinished.
	Class  string
	Active bool
	// ShareOK, ShareFailed and ShareDropped are the shares of its records
	// with a result, 0..1, for its progress bar (Known says there are
	// counts).
	ShareOK, ShareFailed, ShareDropped float64
	Known                              bool
	// Pipeline names the pipeline the job runs, "" for a submitted job.
	Pipeline string
	// Waiting says what holds it up, "" when nothing does.
	Waiting string
	// Ahead is the first job it waits behind, "" for none.
	Ahead string
	// Stuck says that Waiting is a problem, not merely work in progress.
	Stuck bool
}

// newJobRow returns the row of job j.
func newJobRow(j client.JobInfo) jobRow {
	r := jobRow{JobInfo: j, What: j.Plugin}
	if len(j.Steps) > 0 {
		names := make([]string, len(j.Steps))
		for i, st := range j.Steps {
			names[i] = st.Plugin
		}
		r.What = strings.Join(names, " → ")
	}
	if j.Version != "" {
		r.What += "@" + j.Version
	}
	switch j.State {
	case client.JobOpen, client.JobSealed:
		r.Class, r.Active = "run", true
	case client.JobDone:
		r.Class = "ok"
	case client.JobCancelled:
		r.Class = "muted"
	}
	if j.Abandoned {
		r.Class = "bad"
	}
	if j.Counted && j.Records > 0 {
		n := float64(j.Records)
		r.Known = true
		r.ShareOK, r.ShareFailed, r.ShareDropped = float64(j.Succeeded-min(j.Dropped, j.Succeeded))/n, float64(j.Failed)/n, float64(j.Dropped)/n
	}
	return r
}

// StateText is the job's state as the page says it.
func (r jobRow) StateText() string {
	if r.Abandoned {
		return "abandoned"
	}
	return string(r.State)
}

// diagnose says what holds up an unfinished job, from the fleet's status
// and the other jobs: the first reason that applies, from the worst.
func diagnose(r *jobRow, st *fleet.Status, jobs []jobRow) {
	if !r.Active {
		return
	}
	j := r.JobInfo
	if j.Abandoned {
		r.Waiting, r.Stuck = fmt.Sprintf("its submitter stopped reporting %s: no more records will come", agoDuration(j.SentAt, j.Updated)), true
		return
	}
	if st != nil && j.QueuedBatches > 0 {
		healthy, slots, busy := 0, 0, 0
		holders, outOfService := 0, 0
		plugins := []string{j.Plugin}
		if len(j.Steps) > 0 {
			plugins = plugins[:0]
			for _, s := range j.Steps {
				plugins = append(plugins, s.Plugin)
			}
		}
		for _, w := range st.Workers {
			if w.Health != fleet.Healthy {
				continue
			}
			healthy++
			slots += w.Parallel
			busy += w.InFlight
			all := true
			for _, p := range plugins {
				all = all && slices.Contains(w.Plugins, p)
			}
			if all {
				holders++
			}
		}
		for _, p := range st.Plugins {
			if slices.Contains(plugins, p.Name) && p.Workers > 0 && p.OutOfService == p.Workers {
				outOfService++
			}
		}
		var ahead []string
		for _, o := range jobs {
			if o.ID == j.ID || !o.Active || o.Owner != j.Owner || o.QueuedBatches == 0 {
				continue
			}
			if o.Priority < j.Priority || (o.Priority == j.Priority && o.Created.Before(j.Created)) {
				ahead = append(ahead, fmt.Sprintf("%s (%s, %s batches queued)", o.ID, o.What, count(o.QueuedBatches)))
				if r.Ahead == "" {
					r.Ahead = o.ID
				}
			}
		}
		switch {
		case healthy == 0:
			r.Waiting, r.Stuck = fmt.Sprintf("%s batches wait: no healthy worker", count(j.QueuedBatches)), true
		case holders == 0 && !strings.Contains(r.What, "@") && j.Digest == "":
			r.Waiting, r.Stuck = fmt.Sprintf("%s batches wait: no healthy worker has plugin %s", count(j.QueuedBatches), strings.Join(plugins, ", ")), true
		case outOfService > 0:
			r.Waiting, r.Stuck = fmt.Sprintf("%s batches wait: its plugin is out of service on every worker (circuit breaker open)", count(j.QueuedBatches)), true
		case len(ahead) > 0:
			r.Waiting, r.Stuck = fmt.Sprintf("%s batches queued behind %s", count(j.QueuedBatches), strings.Join(ahead, ", ")), busy >= slots
		case busy >= slots:
			r.Waiting = fmt.Sprintf("%s batches queued: all %d worker slots are busy", count(j.QueuedBatches), slots)
		default:
			r.Waiting = fmt.Sprintf("%s batches queued or running", count(j.QueuedBatches))
		}
		return
	}
	switch {
	case r.Pipeline != "":
		r.Waiting = fmt.Sprintf("runs pipeline %s: takes its source's messages as they come (%s so far)", r.Pipeline, count(j.Records))
	case j.State == client.JobOpen:
		r.Waiting = fmt.Sprintf("its submitter is sending records (%s so far)", count(j.Records))
	case j.ResultMessages > 0:
		r.Waiting = fmt.Sprintf("%s result messages wait for its client to read them", count(j.ResultMessages))
	}
}

// agoDuration says how long before now t (or, when zero, alt) was.
func agoDuration(t, alt time.Time) string {
	if t.IsZero() {
		t = alt
	}
	if t.IsZero() {
		return "for a while"
	}
	return "for " + shortDuration(time.Since(t).Truncate(time.Second))
}

// jobsView is the jobs page.
type jobsView struct {
	Active, Finished []jobRow
}

func (c *Console) jobsPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	p := &page{Title: "Jobs", Nav: "jobs"}
	jobs, err := c.cfg.Backend.Jobs(ctx)
	if err != nil {
		p.Problems = append(p.Problems, problem("the jobs", err))
	}
	st, err := c.cfg.Backend.Status(ctx)
	if err != nil {
		p.Problems = append(p.Problems, problem("the fleet's status", err))
	}
	pipes, _ := c.cfg.Backend.Pipelines(ctx) // only to name the jobs that run them
	pipeJobs := map[string]string{}
	for _, pl := range pipes {
		if pl.Status != nil {
			pipeJobs[pl.Status.Job] = pipelineKey(pl)
		}
	}
	v := &jobsView{}
	detailed := 0
	for _, j := range jobs {
		if (j.State == client.JobOpen || j.State == client.JobSealed) && detailed < maxDetailed {
			detailed++
			if info, err := c.cfg.Backend.JobInfo(ctx, j.ID); err == nil {
				j = *info
			}
		}
		row := newJobRow(j)
		row.Pipeline = pipeJobs[j.ID]
		if row.Active {
			v.Active = append(v.Active, row)
		} else {
			v.Finished = append(v.Finished, row)
		}
	}
	for i := range v.Active {
		diagnose(&v.Active[i], st, v.Active)
	}
	// Stuck jobs first, then the oldest.
	slices.SortStableFunc(v.Active, func(a, b jobRow) int {
		if a.Stuck != b.Stuck {
			if a.Stuck {
				return -1
			}
			return 1
		}
		return a.Created.Compare(b.Created)
	})
	p.Data = v
	c.render(w, r, "jobs", http.StatusOK, p)
}

// jobView is a job's page.
type jobView struct {
	Job     jobRow
	Dead    []deadRow
	Errors  []errorGroup
	Config  []string
	CanStop bool
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	id := r.PathValue("id")
	p := &page{Title: "Job " + id, Nav: "jobs"}
	if r.URL.Query().Has("cancelled") {
		p.Flash = "The job is cancelled: its queued batches and unread results are gone, its running batches stop."
	}
	info, err := c.cfg.Backend.JobInfo(ctx, id)
	if err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, client.ErrJobNotFound) || errors.Is(err, client.ErrInvalid) {
			status = http.StatusNotFound
		}
		p.Problems = append(p.Problems, problem("job "+id, err))
		c.render(w, r, "job", status, p)
		return
	}
	v := &jobView{Job: newJobRow(*info)}
	if st, err := c.cfg.Backend.Status(ctx); err == nil {
		var others []jobRow
		if v.Job.Active {
			if jobs, err := c.cfg.Backend.Jobs(ctx); err == nil {
				for _, j := range jobs {
					if j.ID != id && (j.State == client.JobOpen || j.State == client.JobSealed) && j.Owner == info.Owner && len(others) < maxDetailed {
						if d, err := c.cfg.Backend.JobInfo(ctx, j.ID); err == nil {
							j = *d
						}
						others = append(others, newJobRow(j))
					}
				}
			}
		}
		diagnose(&v.Job, st, others)
	}
	for k, val := range info.Config {
		v.Config = append(v.Config, k+"="+val)
	}
	slices.Sort(v.Config)
	for _, st := range info.Steps {
		for k, val := range st.Config {
			v.Config = append(v.Config, st.Plugin+": "+k+"="+val)
		}
	}
	v.CanStop = v.Job.Active
	if info.DeadLetters > 0 {
		dead, err := c.cfg.Backend.DeadLetters(ctx, client.DeadFilter{Job: id, Limit: 50})
		if err != nil {
			p.Problems = append(p.Problems, problem("the job's dead letters", err))
		}
		for _, d := range dead {
			v.Dead = append(v.Dead, newDeadRow(c.cfg.Clock(), d))
		}
		v.Errors = groupErrors(dead)
	}
	p.Data = v
	c.render(w, r, "job", http.StatusOK, p)
}

func (c *Console) cancelJob(w http.ResponseWriter, r *http.Request) {
	if !c.cfg.Admin {
		c.forbidden(w, r)
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	id := r.PathValue("id")
	if err := c.cfg.Backend.CancelJob(ctx, id); err != nil {
		status := http.StatusBadGateway
		switch {
		case errors.Is(err, client.ErrJobNotFound), errors.Is(err, client.ErrInvalid):
			status = http.StatusNotFound
		case errors.Is(err, client.ErrJobClosed):
			status = http.StatusConflict
		}
		c.render(w, r, "notfound", status, &page{Title: "Cannot cancel job " + id, Nav: "jobs", Static: true, Problems: []string{fmt.Sprintf("Cancelling job %s failed: %v", id, err)}})
		return
	}
	http.Redirect(w, r, "/jobs/"+id+"?cancelled", http.StatusSeeOther)
}

// deadRow is one dead letter.
type deadRow struct {
	client.DeadLetterInfo
	// Preview is the value as text, Binary says it is not UTF-8 (then
	// Preview is quoted).
	Preview string
	Binary  bool
	// When says how long ago it was dead-lettered.
	When string
}

func newDeadRow(now time.Time, d client.DeadLetterInfo) deadRow {
	r := deadRow{DeadLetterInfo: d, Preview: string(d.Value), When: ago(now, d.At)}
	if !isText(d.Value) {
		r.Preview, r.Binary = fmt.Sprintf("%q", d.Value), true
	}
	return r
}

// isText says whether b is UTF-8 text without control characters but
// tabs and newlines.
func isText(b []byte) bool {
	s := string(b)
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return false
		}
	}
	return true
}

// errorGroup counts the dead letters of one kind of error: the same
// error but for the quoted values and numbers in it.
type errorGroup struct {
	// Error is the first error of the kind, Kind the kind.
	Error, Kind string
	Count       int
	Jobs        []string
	// Plugins are the plugins that gave it.
	Plugins []string
}

// groupErrors groups dead letters by error, the most frequent first.
func groupErrors(dead []client.DeadLetterInfo) []errorGroup {
	byErr := map[string]*errorGroup{}
	var out []*errorGroup
	for _, d := range dead {
		kind := errorKind(d.Error)
		g := byErr[kind]
		if g == nil {
			g = &errorGroup{Error: d.Error, Kind: kind}
			byErr[kind] = g
			out = append(out, g)
		}
		g.Count++
		if !slices.Contains(g.Jobs, d.Job) {
			g.Jobs = append(g.Jobs, d.Job)
		}
		if !slices.Contains(g.Plugins, d.Plugin) {
			g.Plugins = append(g.Plugins, d.Plugin)
		}
	}
	slices.SortStableFunc(out, func(a, b *errorGroup) int { return cmp.Compare(b.Count, a.Count) })
	res := make([]errorGroup, len(out))
	for i, g := range out {
		res[i] = *g
	}
	return res
}

var (
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'`)
	number = regexp.MustCompile(`\b\d+\b`)
)

// errorKind is err without the values it quotes or counts, so that the
// errors of one cause group together.
func errorKind(err string) string {
	return number.ReplaceAllString(quoted.ReplaceAllString(err, `"…"`), "N")
}
