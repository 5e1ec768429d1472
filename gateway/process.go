package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/l4"
	"frontdoor/upgrade"
)

// RunOptions are the process-level settings of Run.
type RunOptions struct {
	// Ready, when set, is called once every listener accepts connections.
	Ready func()
	// PIDFile, when set, receives the process's pid once it serves (after
	// an upgrade, the new process's), and is removed at exit unless it
	// names another process by then.
	PIDFile string
	// LogLevel, when set, is the level of the log Run was given: a reload
	// applies [log] level to it, unless LevelFixed (the command line set
	// the level).
	LogLevel   *slog.LevelVar
	LevelFixed bool
}

// Run is the gateway as a process: it builds the gateway from cfg and dir
// (re-read from its file, which is then followed), serves until ctx is
// cancelled, then drains within [timeouts] drain and returns.
//
// SIGHUP reloads the configuration file (ReloadConfig), certificates,
// ticket keys, the backend CA bundle, the identity key and the directory.
// SIGUSR2 upgrades: a new process started from the same executable path
// takes over (package upgrade) and this one drains and returns nil.
//
// When this process was itself started by an upgrade, it takes over from
// the old one once it serves, and the old one's admin socket.
func Run(ctx context.Context, cfg *config.Config, dir *directory.Directory, log *slog.Logger, opts RunOptions) error {
	// First: the default action of both signals is to end the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	pred, err := upgrade.FromEnv(10 * time.Second)
	if err != nil {
		return err
	}
	// A directory file is followed: a change (an operator's edit, `frontdoor
	// directory set-active`) is validated and swapped in; a bad file is
	// refused and logged. The embedded example directory cannot change.
	var live *directory.Live
	if path := cfg.DirectoryPath(); !strings.HasPrefix(path, "<embedded>") {
		live, err = directory.NewLive(ctx, &directory.FileSource{Path: path, Interval: directoryPoll}, log)
		if err != nil {
			return err
		}
		dir = live.Current()
	}
	g, err := New(cfg, dir, log)
	if err != nil {
		return err
	}
	startGCHeadroom()
	if live != nil {
		live.OnSwap(func(_, d *directory.Directory) { g.SetDirectory(d) })
		go live.Run(ctx)
	}
	if on, known := l4.MigrateRequests(); known && cfg.Engine.ReusePort {
		log.Info("net.ipv4.tcp_migrate_req", "value", map[bool]int{false: 0, true: 1}[on],
			"note", "1 moves handshakes still unfinished on an upgraded process's sockets to the new one's (docs/deploy.md)")
	}
	p := &process{g: g, log: log, opts: opts, pred: pred, live: live}
	if pred != nil {
		g.adminLn = pred.AdminListener(cfg.Admin.Address)
	}
	serveCtx, cancelServe := context.WithCancel(ctx)
	defer cancelServe()
	p.cancelServe = cancelServe

	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					p.reload(ctx)
				} else {
					go p.upgrade(serveCtx)
				}
			case <-serveCtx.Done():
				if !g.handoff.Load() {
					_ = upgrade.Notify("STOPPING=1")
				}
				return
			}
		}
	}()

	err = g.Serve(serveCtx, p.ready)
	if opts.PIDFile != "" {
		upgrade.RemovePIDFile(opts.PIDFile)
	}
	if err == nil {
		err = p.failure()
	}
	return err
}

// process is Run's state: reloads, upgrades, the link to the process this
// one replaced.
type process struct {
	g           *Gateway
	log         *slog.Logger
	opts        RunOptions
	live        *directory.Live
	pred        *upgrade.Predecessor // nil unless started by an upgrade
	cancelServe context.CancelFunc

	predGone  atomic.Bool // the process this one replaced has exited
	upgrading atomic.Bool
	failMu    sync.Mutex
	failErr   error
}

func (p *process) fail(err error) {
	p.failMu.Lock()
	if p.failErr == nil {
		p.failErr = err
	}
	p.failMu.Unlock()
	p.cancelServe()
}

func (p *process) failure() error {
	p.failMu.Lock()
	defer p.failMu.Unlock()
	return p.failErr
}

// ready runs once every listening socket is up.
func (p *process) ready() {
	if p.pred != nil {
		if err := p.takeOver(); err != nil {
			p.log.Error("upgrade: cannot take over; stopping, the old process keeps serving", "err", err)
			p.fail(err)
			return
		}
	}
	if p.opts.PIDFile != "" {
		if err := upgrade.WritePIDFile(p.opts.PIDFile); err != nil {
			p.log.Error("pid file", "file", p.opts.PIDFile, "err", err)
		}
	}
	if err := upgrade.Notify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid())); err != nil {
		p.log.Warn("could not notify the service manager", "err", err)
	}
	if p.opts.Ready != nil {
		p.opts.Ready()
	}
}

// takeOver steers new connections to this process's sockets and tells the
// old process it may drain.
func (p *process) takeOver() error {
	bound, err := p.g.server.BoundAddrs()
	if err != nil {
		return err
	}
	skip := map[string]int{}
	for _, a := range bound {
		if n, ok := p.pred.Hello.Sockets[a]; ok {
			skip[a] = n
		}
	}
	if err := p.g.server.Steer(skip); err != nil {
		return err
	}
	if err := p.pred.Ready(); err != nil {
		return err
	}
	p.log.Info("upgrade: serving; the old process drains", "old_pid", p.pred.Hello.PID)
	go func() {
		<-p.pred.Exited()
		// Its sockets are closed: let the kernel's hash spread new
		// connections over this process's own sockets again.
		if err := p.g.server.Unsteer(); err != nil {
			p.log.Warn("upgrade: removing the steering program", "err", err)
		}
		p.predGone.Store(true)
		p.log.Info("upgrade: the old process has exited", "old_pid", p.pred.Hello.PID)
	}()
	return nil
}

// reload applies SIGHUP: the directory (first, so that a configuration
// built now routes to the servers it adds), the configuration file, then
// certificates and keys.
func (p *process) reload(ctx context.Context) {
	if p.live != nil {
		_ = p.live.Reload(ctx)
	}
	g := p.g
	cur := g.Config()
	if cur.Path == config.EmbeddedPath {
		p.log.Info("configuration: the embedded example cannot change; reloading certificates and keys only")
	} else if cfg, err := config.Load(cur.Path); err != nil {
		// One line per problem, each FILE:LINE: KEY: message.
		var lines []string
		var list interface{ Unwrap() []error }
		if errors.As(err, &list) {
			for _, e := range list.Unwrap() {
				lines = append(lines, e.Error())
			}
		} else {
			lines = append(lines, err.Error())
		}
		for _, l := range lines {
			p.log.Error("configuration refused, the running one stays: " + l)
		}
	} else {
		if p.opts.LogLevel != nil && !p.opts.LevelFixed {
			if lv, err := config.ParseLogLevel(cfg.Log.Level); err == nil {
				p.opts.LogLevel.Set(lv)
			}
		} else {
			cfg.Log.Level = cur.Log.Level // the command line's level stays
		}
		if changed, err := g.ReloadConfig(cfg); err != nil {
			p.log.Error("configuration refused, the running one stays", "err", err)
		} else if !changed {
			p.log.Info("configuration unchanged", "config", cfg.Path)
		}
	}
	_ = g.Reload()
}

// upgrade applies SIGUSR2: start a new process and, once it serves, drain
// and return from Run. Any failure leaves this process serving.
func (p *process) upgrade(ctx context.Context) {
	if err := p.tryUpgrade(ctx); err != nil {
		p.log.Error("upgrade failed: this process keeps serving", "err", err)
		if p.opts.PIDFile != "" {
			// Written again with this pid: `frontdoor upgrade` takes a
			// new file naming the old process as the answer "failed".
			if err := upgrade.WritePIDFile(p.opts.PIDFile); err != nil {
				p.log.Error("pid file", "file", p.opts.PIDFile, "err", err)
			}
		}
	}
}

func (p *process) tryUpgrade(ctx context.Context) error {
	if !p.upgrading.CompareAndSwap(false, true) {
		return errors.New("an upgrade is already in progress")
	}
	handedOver := false
	defer func() {
		if !handedOver {
			p.upgrading.Store(false)
		}
	}()
	srv := p.g.server
	switch {
	case !srv.ReusePort():
		return errors.New("engine.reuse_port is false: the new process could not bind beside this one; restart instead")
	case p.pred != nil && !p.predGone.Load():
		return fmt.Errorf("the process this one replaced (pid %d) is still draining; try again once it has exited", p.pred.Hello.PID)
	}
	bound, err := srv.BoundAddrs()
	if err != nil {
		return err
	}
	hello := upgrade.Hello{PID: os.Getpid(), Sockets: map[string]int{}}
	for _, a := range bound {
		hello.Sockets[a] = srv.EventLoops()
	}
	var admin *os.File
	if tl, ok := p.g.adminLn.(*net.TCPListener); ok {
		if admin, err = tl.File(); err != nil {
			return fmt.Errorf("admin socket: %w", err)
		}
		defer admin.Close()
		hello.Admin = tl.Addr().String()
	}
	if on, known := l4.MigrateRequests(); known && !on {
		p.log.Info("upgrade: net.ipv4.tcp_migrate_req is 0; a handshake still unfinished when this process closes its sockets would be reset (docs/deploy.md)")
	}
	p.log.Info("upgrade: starting a new process", "executable", executable())
	succ, err := upgrade.Start(ctx, upgrade.Options{Hello: hello, Admin: admin, Log: p.log})
	if err != nil {
		return err
	}
	handedOver = true
	p.log.Info("upgrade: the new process serves; draining", "new_pid", succ.PID)
	p.g.handoff.Store(true)
	p.cancelServe()
	return nil
}

func executable() string {
	exe, err := os.Executable()
	if err != nil {
		return "?"
	}
	return exe
}
