// Package cli is frontdoor's command line: it parses arguments, loads files
// and hands over to the package that does the work (gateway, mailboxd,
// bench). cmd/frontdoor/main.go only calls Main, so that every subcommand,
// its flags and its exit codes are testable in-process.
//
// Exit codes: 0 success; 2 bad usage or a bad configuration or directory
// file; 1 a failure at run time.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/pkg/profile"

	"frontdoor/bench"
	"frontdoor/directory"
	"frontdoor/examples"
	"frontdoor/gateway"
	"frontdoor/gateway/config"
	"frontdoor/mailboxd"
)

// Version is the release printed by `frontdoor version`, set at link time:
//
//	go build -ldflags "-X frontdoor/cli.Version=1.2.3" ./cmd/frontdoor
var Version = "dev"

// Exit codes returned by Main.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // bad usage, bad configuration or directory
)

// The work functions, replaced by tests to observe what a subcommand hands
// over without serving anything.
var (
	runGateway  = gateway.Run
	runMailboxd = mailboxd.Run
	runBench    = bench.Main
)

// command is one subcommand, or a group of them ("cert selfsigned").
type command struct {
	name    string
	args    string // synopsis after the name
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
	subs    []command // a group: args[0] names one of these, run is nil
}

// invoke runs c, or for a group the subcommand args[0] names.
func (c *command) invoke(args []string, stdout, stderr io.Writer) int {
	if c.subs == nil {
		return c.run(args, stdout, stderr)
	}
	if len(args) == 0 {
		groupUsage(stderr, c)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		groupUsage(stdout, c)
		return exitOK
	}
	if sub := c.lookup(args[0]); sub != nil {
		return sub.run(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "frontdoor %s: unknown command %q\n\n", c.name, args[0])
	groupUsage(stderr, c)
	return exitUsage
}

func (c *command) lookup(name string) *command {
	for i := range c.subs {
		if c.subs[i].name == name {
			return &c.subs[i]
		}
	}
	return nil
}

func groupUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage:\n  frontdoor %s COMMAND [arguments]\n\nCommands:\n", c.name)
	for _, s := range c.subs {
		fmt.Fprintf(w, "  %-13s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "\nRun \"frontdoor %s COMMAND --help\" for a command's flags.\n", c.name)
}

// commands lists the subcommands in the order help shows them. It is filled
// in init because the help command refers to it.
var commands []command

func init() {
	commands = []command{
		{"run", "[--config FILE] [--log-level LEVEL] [--pid-file FILE] [--profile MODE [--profile-path DIR]]", "serve clients until SIGINT or SIGTERM; SIGHUP reloads, SIGUSR2 upgrades", cmdRun, nil},
		{"upgrade", "--pid-file FILE | --pid PID [--timeout DURATION]",
			"hand a running gateway over to a new process of the installed binary, without losing a request", cmdUpgrade, nil},
		{"check-config", "FILE", "validate a configuration file, its directory and its TLS files", cmdCheckConfig, nil},
		{"mailboxd", "--listen ADDR --name NAME [--identity-keys FILE]", "run a reference mailbox server", cmdMailboxd, nil},
		{"bench", "[args...]", "run the benchmark suite or load generator (see: frontdoor bench --help)", cmdBench, nil},
		{name: "cert", summary: "certificate tools", subs: []command{
			{"selfsigned", "--host NAME [--host NAME ...] --out DIR [--valid-for DURATION]",
				"write a self-signed certificate and key for development", cmdCertSelfSigned, nil},
		}},
		{name: "directory", summary: "directory tools", subs: []command{
			{"check", "FILE", "validate a directory file and count what it holds", cmdDirectoryCheck, nil},
			{"hash-password", "", "read a password on standard input and print its argon2id hash", cmdDirectoryHashPassword, nil},
			{"set-active", "--file FILE --database NAME --server NAME",
				"move a database's active copy to another server (switchover, failover)", cmdDirectorySetActive, nil},
		}},
		{name: "state", summary: "component states of a running gateway (health pages, draining)", subs: []command{
			{"get", "[--admin ADDR] [--json]", "list the component states of a running gateway", cmdStateGet, nil},
			{"set", "--component NAME --state active|inactive [--admin ADDR]",
				"set a component active or inactive (ServerWideOffline: the whole gateway)", cmdStateSet, nil},
		}},
		{name: "tls", summary: "TLS tools", subs: []command{
			{"ticket-keys", "--out FILE [--keep DURATION]",
				"create or rotate a session-ticket key file shared by an array", cmdTLSTicketKeys, nil},
		}},
		{name: "identity", summary: "identity assertion keys", subs: []command{
			{"keygen", "--out FILE [--alg ed25519|ml-dsa-44] [--kid ID] [--public FILE] [--keep N]",
				"create or rotate the identity signing keys an array shares", cmdIdentityKeygen, nil},
			{"verify", "--keys FILE", "verify an identity assertion read from stdin and print its claims", cmdIdentityVerify, nil},
		}},
		{"version", "", "print the version", cmdVersion, nil},
		{"help", "[COMMAND [SUBCOMMAND]]", "show help for frontdoor or a command", cmdHelp, nil},
	}
}

// Main runs the frontdoor command line with args (without the program name)
// and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	if c := lookup(args[0]); c != nil {
		return c.invoke(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "frontdoor: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "frontdoor is a client-access gateway for mail systems.\n\nUsage:\n  frontdoor COMMAND [arguments]\n\nCommands:\n")
	// A group is listed by its subcommands: "cert selfsigned".
	type line struct{ name, summary string }
	var lines []line
	width := 0
	for _, c := range commands {
		if c.subs == nil {
			lines = append(lines, line{c.name, c.summary})
		}
		for _, s := range c.subs {
			lines = append(lines, line{c.name + " " + s.name, s.summary})
		}
	}
	for _, l := range lines {
		width = max(width, len(l.name))
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s %s\n", width, l.name, l.summary)
	}
	fmt.Fprintf(w, "\nRun \"frontdoor COMMAND --help\" for a command's flags.\n")
}

// newFlags returns a flag set for a subcommand whose usage text is synopsis
// plus description plus the flags' defaults.
func newFlags(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("frontdoor "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: frontdoor %s %s\n\n%s\n", name, synopsis, description)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args with fs. It returns done with the exit code when the
// command should stop: after --help (usage on stdout, 0) or a bad flag (the
// flag package's message and the usage on stderr, 2).
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	// Print nothing while parsing: on --help the usage goes to stdout,
	// on an error to stderr, and flag cannot tell the two apart.
	usageFn := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usageFn
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK, true
	case err != nil:
		return usageError(fs, stderr, "%v", err), true
	}
	return 0, false
}

// usageError prints a usage problem and the command's usage on stderr and
// returns the usage exit code.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.SetOutput(stderr)
	fs.Usage()
	return exitUsage
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "[--config FILE] [--log-level LEVEL] [--pid-file FILE] [--profile MODE [--profile-path DIR]]",
		"Serve clients until SIGINT or SIGTERM, then drain in-flight requests and exit.\n"+
			"Without --config, serve with the embedded example configuration and directory\n"+
			"(examples/frontdoor.toml: port 8080, mailbox servers on 127.0.0.1:18081-18082).\n"+
			"\n"+
			"SIGHUP reloads the configuration file (a bad one is refused and logged as\n"+
			"FILE:LINE: KEY: message; the running one stays), certificates, keys and the\n"+
			"directory, and reopens the access log, without closing a connection under a\n"+
			"request. SIGUSR2 (or `frontdoor upgrade`) starts a new process of the installed\n"+
			"binary, which takes new connections over; this one then drains and exits 0.\n"+
			"See docs/deploy.md.\n"+
			"\n"+
			"--profile records one profile of the whole run (github.com/pkg/profile), written\n"+
			"to DIR once the gateway has drained after SIGINT or SIGTERM: cpu.pprof (cpu),\n"+
			"mem.pprof (mem: in-use heap; allocs: every allocation), mutex.pprof,\n"+
			"block.pprof, or trace.out (an execution trace). Read it with `go tool pprof` or\n"+
			"`go tool trace`. mutex and block record every event, which slows the gateway;\n"+
			"while cpu runs, the admin endpoint's /debug/pprof/profile answers 500. The\n"+
			"admin endpoint's /debug/pprof/ serves the same profiles on demand instead.")
	configPath := fs.String("config", "", "configuration `FILE` (default: the embedded example)")
	level := fs.String("log-level", "", "override [log] level with `LEVEL`: debug, info, warn or error")
	pidFile := fs.String("pid-file", "", "write the pid to `FILE` once serving (an upgraded process writes its own)")
	profMode := fs.String("profile", "", "record a profile of the run: `MODE` is "+strings.Join(profileModes, ", "))
	profPath := fs.String("profile-path", ".", "`DIR` the profile is written to (created if missing)")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	if *level != "" {
		if _, err := config.ParseLogLevel(*level); err != nil {
			return usageError(fs, stderr, "--log-level: %v", err)
		}
	}
	profOpt, ok := profileMode(*profMode)
	if *profMode != "" && !ok {
		return usageError(fs, stderr, "--profile %q: want one of %s", *profMode, strings.Join(profileModes, ", "))
	}
	if *profMode == "" && flagSet(fs, "profile-path") {
		return usageError(fs, stderr, "--profile-path needs --profile")
	}

	cfg, dir, err := loadFiles(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	if *level != "" {
		cfg.Log.Level = *level
	}
	levelVar := new(slog.LevelVar)
	log := newLogger(stderr, cfg.Log, levelVar)
	log.Info("frontdoor starting", "version", Version, "config", cfg.Path, "directory", dirPath(cfg, *configPath),
		"gateway_id", cfg.GatewayID, "listeners", len(cfg.Listeners), "servers", len(dir.Servers), "users", len(dir.Users))

	var prof interface{ Stop() }
	if profOpt != nil {
		if err := os.MkdirAll(*profPath, 0o755); err != nil {
			log.Error("--profile-path", "err", err)
			return exitFailure
		}
		// NoShutdownHook: the library's own hook would catch SIGINT and
		// call os.Exit before the drain. Stop runs below, once the
		// gateway has drained, and writes the profile.
		prof = startProfile(profOpt, profile.ProfilePath(*profPath), profile.NoShutdownHook, profile.Quiet)
		log.Info("profiling", "mode", *profMode, "file", filepath.Join(*profPath, profileFiles[*profMode]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := gateway.RunOptions{PIDFile: *pidFile, LogLevel: levelVar, LevelFixed: *level != ""}
	err = runGateway(ctx, cfg, dir, log, opts)
	if prof != nil {
		prof.Stop()
		log.Info("profile written", "mode", *profMode, "file", filepath.Join(*profPath, profileFiles[*profMode]))
	}
	if err != nil {
		log.Error("frontdoor failed", "err", err)
		return exitFailure
	}
	log.Info("frontdoor stopped")
	return exitOK
}

// profileModes are the values of run --profile, each a pkg/profile mode,
// and profileFiles the file each writes in --profile-path.
var (
	profileModes = []string{"cpu", "mem", "allocs", "mutex", "block", "trace"}
	profileFiles = map[string]string{"cpu": "cpu.pprof", "mem": "mem.pprof", "allocs": "mem.pprof",
		"mutex": "mutex.pprof", "block": "block.pprof", "trace": "trace.out"}
)

// profileMode maps a --profile value to its pkg/profile option.
func profileMode(name string) (func(*profile.Profile), bool) {
	switch name {
	case "cpu":
		return profile.CPUProfile, true
	case "mem":
		return profile.MemProfileHeap, true
	case "allocs":
		return profile.MemProfileAllocs, true
	case "mutex":
		return profile.MutexProfile, true
	case "block":
		return profile.BlockProfile, true
	case "trace":
		return profile.TraceProfile, true
	}
	return nil, false
}

// startProfile is profile.Start, replaced by tests (a process may start
// only one profile: a second Start calls log.Fatal).
var startProfile = func(opts ...func(*profile.Profile)) interface{ Stop() } { return profile.Start(opts...) }

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// loadFiles loads the configuration at path and the directory it names, or
// the embedded example pair when path is empty.
func loadFiles(path string) (*config.Config, *directory.Directory, error) {
	var (
		cfg *config.Config
		dir *directory.Directory
		err error
	)
	if path == "" {
		if cfg, err = config.Default(); err != nil {
			return nil, nil, err
		}
		dir, err = directory.Parse(dirPath(cfg, path), examples.Directory)
	} else {
		if cfg, err = config.Load(path); err != nil {
			return nil, nil, err
		}
		dir, err = directory.Load(cfg.DirectoryPath())
	}
	if err != nil {
		return nil, nil, err
	}
	return cfg, dir, nil
}

// dirPath is where the directory was read from, for messages.
func dirPath(cfg *config.Config, configPath string) string {
	if configPath == "" {
		return "<embedded>/directory.toml"
	}
	return cfg.DirectoryPath()
}

// newLogger builds the process logger on w from a validated [log] section.
// Its level is lv, set here, which a configuration reload can change.
func newLogger(w io.Writer, c config.Log, lv *slog.LevelVar) *slog.Logger {
	level, err := config.ParseLogLevel(c.Level)
	if err != nil {
		level = slog.LevelInfo // unreachable after validation
	}
	lv.Set(level)
	opts := &slog.HandlerOptions{Level: lv}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check-config", "FILE",
		"Validate a configuration file and the directory file it names, report every\n"+
			"problem as FILE:LINE: KEY: message, and exit 0 if there is none, 2 otherwise.\n"+
			"For listeners with tls = true it also loads the certificates, keys, OCSP\n"+
			"responses and client CA bundle, and the [tls] ticket_key_file, as the gateway\n"+
			"would on start (a tls_self_signed listener's missing files are fine: the\n"+
			"gateway generates them). Certificates that expire within 14 days, have\n"+
			"expired or cannot be served are reported as warnings, without failing.\n"+
			"When a protocol accepts negotiate it loads the Kerberos keytabs too\n"+
			"([auth] keytab and the listeners' own), and warns about directory principals\n"+
			"whose realm the gateway would not accept.")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(fs, stderr, "want exactly one FILE, got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)
	cfg, dir, err := loadFiles(path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	failed := false
	for _, f := range checkTLSFiles(cfg) {
		fmt.Fprintf(stderr, "%v\n", f.err)
		failed = failed || !f.warning
	}
	for _, f := range checkKeytabs(cfg, dir) {
		fmt.Fprintf(stderr, "%v\n", f.err)
		failed = failed || !f.warning
	}
	if cfg.HasMail() && cfg.Mail.Login == "master" {
		// Read on start, as the gateway would (docs/mail.md).
		if _, err := cfg.MasterPassword(); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			failed = true
		}
	}
	if failed {
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d protocols, %d servers, %d users)\n",
		path, len(cfg.Listeners), len(cfg.Protocols), len(dir.Servers), len(dir.Users))
	return exitOK
}

func cmdMailboxd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("mailboxd", "--listen ADDR --name NAME [--identity-keys FILE [--identity-header NAME]]",
		"Run a reference mailbox server (package mailboxd), the backend `make run` and the\n"+
			"tests proxy to. Stops on SIGINT or SIGTERM.\n"+
			"\n"+
			"With --identity-keys, every request but health probes must carry exactly one\n"+
			"identity assertion (docs/identity.md) that verifies with a key of FILE, the\n"+
			"public set from `frontdoor identity keygen --public`; others are answered 403.")
	listen := fs.String("listen", "", "`host:port` to listen on (required)")
	name := fs.String("name", "", "server `NAME` reported in every answer, as in the directory (required)")
	identityKeys := fs.String("identity-keys", "", "require identity assertions that verify with the public key set `FILE`")
	identityHeader := fs.String("identity-header", "", "request header `NAME` that carries the assertion (default "+mailboxd.DefaultIdentityHeader+")")
	notificationWait := fs.Duration("notification-wait", 0, "how long a MAPI NotificationWait is held (default 5s; X-Mailboxd-Hold overrides)")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	case *listen == "":
		return usageError(fs, stderr, "--listen is required")
	case *name == "":
		return usageError(fs, stderr, "--name is required")
	case *identityHeader != "" && *identityKeys == "":
		return usageError(fs, stderr, "--identity-header needs --identity-keys")
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return usageError(fs, stderr, "--listen %q: want host:port", *listen)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("server", *name)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := mailboxd.Options{Listen: *listen, Name: *name, IdentityKeys: *identityKeys, IdentityHeader: *identityHeader,
		NotificationWait: *notificationWait}
	if err := runMailboxd(ctx, opts, log); err != nil {
		log.Error("mailboxd failed", "err", err)
		return exitFailure
	}
	return exitOK
}

func cmdBench(args []string, stdout, stderr io.Writer) int {
	// The bench package owns its flags, --help included.
	return runBench(args, stdout, stderr)
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "", "Print frontdoor's version, the Go release it was built with and the platform.")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintf(stdout, "frontdoor %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		usage(stdout)
		return exitOK
	case len(args) > 2 || len(args) == 2 && (lookup(args[0]) == nil || lookup(args[0]).subs == nil):
		var groups []string
		for _, c := range commands {
			if c.subs != nil {
				groups = append(groups, c.name)
			}
		}
		fmt.Fprintf(stderr, "frontdoor help: want at most one COMMAND (and a SUBCOMMAND of %s), got %q\n", strings.Join(groups, ", "), strings.Join(args, " "))
		return exitUsage
	case args[0] == "help":
		usage(stdout)
		return exitOK
	}
	if c := lookup(args[0]); c != nil {
		return c.invoke(append(append([]string(nil), args[1:]...), "--help"), stdout, stderr)
	}
	fmt.Fprintf(stderr, "frontdoor help: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}
