package gateway

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"frontdoor/directory"
	"frontdoor/gateway/config"
)

// RunOptions are the process-level settings of Run.
type RunOptions struct {
	// Ready, when set, is called once every listener accepts connections.
	Ready func()
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
func Run(ctx context.Context, cfg *config.Config, dir *directory.Directory, log *slog.Logger, opts RunOptions) error {
	// First: the default action of SIGHUP is to end the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP)
	defer signal.Stop(sigs)

	var err error
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
	if live != nil {
		live.OnSwap(func(_, d *directory.Directory) { g.SetDirectory(d) })
		go live.Run(ctx)
	}
	p := &process{g: g, log: log, opts: opts, live: live}
	serveCtx, cancelServe := context.WithCancel(ctx)
	defer cancelServe()
	p.cancelServe = cancelServe

	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					p.reload(ctx)
				}
			case <-serveCtx.Done():
				return
			}
		}
	}()

	return g.Serve(serveCtx, p.ready)
}

// process is Run's state.
type process struct {
	g           *Gateway
	log         *slog.Logger
	opts        RunOptions
	live        *directory.Live
	cancelServe context.CancelFunc
}

// ready runs once every listening socket is up.
func (p *process) ready() {
	if p.opts.Ready != nil {
		p.opts.Ready()
	}
}

// reload applies SIGHUP: the configuration file, then certificates, keys
// and the directory.
func (p *process) reload(ctx context.Context) {
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
	if p.live != nil {
		_ = p.live.Reload(ctx)
	}
}
