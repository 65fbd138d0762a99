package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

// WorkerSpec describes a worker to start.
type WorkerSpec struct {
	// ID is the worker's id.
	ID string
	// Parallel is how many batches it runs at once.
	Parallel int
	// CacheDir is its compiled-module cache ("" for none).
	CacheDir string
	// Heartbeat is its heartbeat interval (0: the default).
	Heartbeat time.Duration
}

// Spawner starts workers against a server.
type Spawner interface {
	// Start starts a worker against the server at url. It returns once
	// the worker runs (not necessarily once it is connected).
	Start(ctx context.Context, url string, w WorkerSpec) (Worker, error)
	// Kind names what a worker is ("process", "in-process"), for reports.
	Kind() string
}

// Worker is a worker a Spawner started.
type Worker interface {
	// Stop drains the worker and waits for it to end. The error is the
	// worker's own (Run's), or says it did not stop within 30 s (it is
	// then killed).
	Stop() error
	// Kill ends the worker at once, as a crash would: nothing is
	// acknowledged or said goodbye. The error is the operating system's,
	// for a process that could not be killed.
	Kill() error
}

// Processes starts workers as child processes: Command followed by
// "worker" and its flags (--nats, --id, --parallel, --cache-dir,
// --heartbeat). `dataflare bench` uses its own executable.
type Processes struct {
	// Command is the dataflare executable and any global flags.
	Command []string
	// Stderr receives the workers' logs (nil: discarded).
	Stderr io.Writer
}

// Kind returns "process".
func (p Processes) Kind() string { return "process" }

// Start runs `<Command> --nats url worker --id … --parallel …` (and
// --cache-dir, --heartbeat when set). The error wraps ErrInvalidConfig when
// Command is empty, or is the error of starting the process.
func (p Processes) Start(_ context.Context, url string, w WorkerSpec) (Worker, error) {
	if len(p.Command) == 0 {
		return nil, fmt.Errorf("%w: no worker command", ErrInvalidConfig)
	}
	args := append(p.Command[1:len(p.Command):len(p.Command)], "--nats", url, "--log-level", "warn", "worker",
		"--id", w.ID, "--parallel", strconv.Itoa(max(w.Parallel, 1)))
	if w.CacheDir != "" {
		args = append(args, "--cache-dir", w.CacheDir)
	}
	if w.Heartbeat > 0 {
		args = append(args, "--heartbeat", w.Heartbeat.String())
	}
	// The child is stopped through Stop or Kill, not through a context:
	// a cancelled run still stops it (deferred Stop).
	cmd := exec.Command(p.Command[0], args...)
	cmd.Stdout, cmd.Stderr = p.Stderr, p.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start worker %s: %w", w.ID, err)
	}
	pw := &procWorker{cmd: cmd, done: make(chan struct{})}
	// Stops when the child exits.
	go func() { pw.err = cmd.Wait(); close(pw.done) }()
	return pw, nil
}

type procWorker struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (w *procWorker) Stop() error {
	select {
	case <-w.done:
		return w.exitErr()
	default:
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
		return w.exitErr()
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
		return fmt.Errorf("bench: worker %d did not stop on SIGTERM", w.cmd.Process.Pid)
	}
}

func (w *procWorker) exitErr() error {
	if w.err != nil {
		return fmt.Errorf("bench: worker %d: %w", w.cmd.Process.Pid, w.err)
	}
	return nil
}

func (w *procWorker) Kill() error {
	err := w.cmd.Process.Kill()
	<-w.done
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// InProcess starts workers in this process, each on its own connection
// with its own WebAssembly runtime (modules from the plugin store).
// Kill closes the worker's connection at once: its batches are neither
// acknowledged nor released, as when a process dies.
type InProcess struct{}

// Kind returns "in-process".
func (InProcess) Kind() string { return "in-process" }

// Start starts a worker in this process. The error is that of connecting
// to url, of creating the worker's WebAssembly runtime, or worker.New's.
func (InProcess) Start(ctx context.Context, url string, w WorkerSpec) (Worker, error) {
	nc, err := nats.Connect(url, nats.Name("dataflare "+w.ID))
	if err != nil {
		return nil, fmt.Errorf("bench: connect worker %s: %w", w.ID, err)
	}
	cfg := worker.Config{ID: w.ID, Parallel: w.Parallel, Heartbeat: w.Heartbeat, DrainTimeout: 10 * time.Second}
	opts := []wasm.Option{wasm.WithInstances(max(w.Parallel, 1))}
	if w.CacheDir != "" {
		opts = append(opts, wasm.WithCacheDir(w.CacheDir))
	}
	rt, err := wasm.NewRuntime(ctx, opts...)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bench: worker %s: %w", w.ID, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		rt.Close(ctx)
		nc.Close()
		return nil, fmt.Errorf("bench: worker %s: %w", w.ID, err)
	}
	reg, err := wasm.NewRegistry(rt, wasmstore.NewLazy(js))
	if err != nil {
		rt.Close(ctx)
		nc.Close()
		return nil, fmt.Errorf("bench: worker %s: %w", w.ID, err)
	}
	cfg.Modules = reg
	closeRT := func() {
		reg.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rt.Close(cctx)
	}
	wk, err := worker.New(nc, cfg)
	if err != nil {
		closeRT()
		nc.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	iw := &inWorker{nc: nc, cancel: cancel, done: make(chan struct{}), closeRT: closeRT}
	// Stops when Stop or Kill cancels runCtx.
	go func() {
		defer close(iw.done)
		iw.err = wk.Run(runCtx)
	}()
	return iw, nil
}

type inWorker struct {
	nc      *nats.Conn
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	closeRT func()
	once    sync.Once
}

func (w *inWorker) Stop() error {
	w.cancel()
	<-w.done
	w.finish()
	return w.err
}

func (w *inWorker) Kill() error {
	w.nc.Close()
	w.cancel()
	<-w.done
	w.finish()
	return nil
}

func (w *inWorker) finish() {
	w.once.Do(func() {
		w.nc.Close()
		if w.closeRT != nil {
			w.closeRT()
		}
	})
}

// waitWorkers waits until the coordinator sees exactly n healthy workers.
func waitWorkers(ctx context.Context, cl *client.Client, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		st, err := cl.SystemStatus(ctx)
		healthy := 0
		if err == nil {
			for _, w := range st.Workers {
				if w.Health == fleet.Healthy {
					healthy++
				}
			}
			if healthy == n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d healthy workers after %v, want %d (%v)", healthy, within, n, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// discard is a logger for the stacks of Scaling, ColdStart and Failover.
var discard = slog.New(slog.DiscardHandler)
