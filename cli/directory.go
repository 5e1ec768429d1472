package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"frontdoor/auth/password"
	"frontdoor/directory"
)

// stdin is what `directory hash-password` and `identity verify` read;
// tests replace it.
var stdin io.Reader = os.Stdin

// maxPassword bounds what hash-password accepts: longer input is a file
// piped by mistake, not a password.
const maxPassword = 1024

func cmdDirectoryCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("directory check", "FILE",
		"Validate a directory file (docs/directory.md), report every problem as\n"+
			"FILE:LINE: KEY: message, and exit 0 if there is none, 2 otherwise. On success,\n"+
			"print how many users (disabled, without a password hash), databases, servers\n"+
			"and sites it has.")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(fs, stderr, "want exactly one FILE, got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)
	d, err := directory.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok (%s)\n", path, summary(d))
	return exitOK
}

// summary counts what d holds: "4 users (1 disabled, 2 without a
// password), 2 databases, 2 servers, 2 sites".
func summary(d *directory.Directory) string {
	disabled, noPassword := 0, 0
	for _, u := range d.Users {
		if u.Disabled {
			disabled++
		}
		if u.PasswordHash == "" {
			noPassword++
		}
	}
	var notes []string
	if disabled > 0 {
		notes = append(notes, fmt.Sprintf("%d disabled", disabled))
	}
	if noPassword > 0 {
		notes = append(notes, fmt.Sprintf("%d without a password", noPassword))
	}
	users := count(len(d.Users), "user")
	if notes != nil {
		users += " (" + strings.Join(notes, ", ") + ")"
	}
	return fmt.Sprintf("%s, %s, %s, %s", users, count(len(d.Databases), "database"),
		count(len(d.Servers), "server"), count(len(d.Sites), "site"))
}

// count is "1 user", "2 users".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func cmdDirectoryHashPassword(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("directory hash-password", "",
		"Read a password from the first line of standard input and print its hash for a\n"+
			"user's password_hash in the directory: argon2id with a random salt and OWASP's\n"+
			"parameters (m=19456 KiB, t=2, p=1), as a PHC string. The line's ending (\\n or\n"+
			"\\r\\n) is not part of the password. An empty password is refused.\n"+
			"\n"+
			"The input is not hidden when typed; better pipe it in, e.g.\n"+
			"  frontdoor directory hash-password < password.txt")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "Password (shown as you type): ")
		}
	}
	pw, err := readPassword(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor directory hash-password: %v\n", err)
		return exitUsage
	}
	h, err := password.Hash(pw)
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor directory hash-password: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, h)
	return exitOK
}

// readPassword reads one line from r, without its "\n" or "\r\n". It stops
// at the first newline, so a password typed on a terminal needs no ^D.
func readPassword(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, maxPassword+2)) // room for "\r\n"
	line, err := br.ReadBytes('\n')
	switch {
	case errors.Is(err, io.EOF):
		if len(line) > maxPassword {
			return nil, fmt.Errorf("password longer than %d bytes", maxPassword)
		}
	case err != nil:
		return nil, fmt.Errorf("reading standard input: %w", err)
	default:
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) > maxPassword {
			return nil, fmt.Errorf("password longer than %d bytes", maxPassword)
		}
	}
	if len(line) == 0 {
		return nil, errors.New("empty password on standard input")
	}
	return line, nil
}

func cmdDirectorySetActive(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("directory set-active", "--file FILE --database NAME --server NAME",
		"Move a database's active copy to another server: a switchover, or a failover\n"+
			"when the active server is down. FILE is edited in place: the database's active\n"+
			"server becomes NAME and the old one takes NAME's place among its copies (or\n"+
			"joins them); comments and layout stay as they are. The file must validate\n"+
			"before and after the edit. The result replaces FILE by rename, with its mode\n"+
			"and owner: whatever watches FILE (see \"Reloading\" in docs/directory.md)\n"+
			"reads the old directory or the new one, never half of either, and follows\n"+
			"within about two seconds. Nothing is written when NAME is already active.\n"+
			"\n"+
			"Run it in one place at a time: it refuses to write if FILE changed while it\n"+
			"was editing it.")
	file := fs.String("file", "", "directory `FILE` to edit (required)")
	database := fs.String("database", "", "`NAME` of the database to move (required)")
	server := fs.String("server", "", "`NAME` of the server to make active (required)")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	case *file == "":
		return usageError(fs, stderr, "--file is required")
	case *database == "":
		return usageError(fs, stderr, "--database is required")
	case *server == "":
		return usageError(fs, stderr, "--server is required")
	}
	// Problems with the file or the names are the operator's to fix (exit
	// 2); SetActive checks them too, but cannot tell them from a failure
	// to write.
	d, err := directory.Load(*file)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	if d.Database(*database) == nil {
		fmt.Fprintf(stderr, "frontdoor directory set-active: %s has no database %q (%s)\n", *file, *database, names(d.Databases, func(db *directory.Database) string { return db.Name }))
		return exitUsage
	}
	if d.Server(*server) == nil {
		fmt.Fprintf(stderr, "frontdoor directory set-active: %s has no server %q (%s)\n", *file, *server, names(d.Servers, func(s *directory.Server) string { return s.Name }))
		return exitUsage
	}
	prev, err := directory.SetActive(*file, *database, *server)
	if err != nil {
		fmt.Fprintf(stderr, "frontdoor directory set-active: %v\n", err)
		return exitFailure
	}
	if prev == *server {
		fmt.Fprintf(stdout, "%s: %s is already active; %s unchanged\n", *database, *server, *file)
		return exitOK
	}
	fmt.Fprintf(stdout, "%s: active copy moved from %s to %s in %s\n", *database, prev, *server, *file)
	return exitOK
}

// names lists the names of xs for messages: "defined: a, b" or "none
// defined".
func names[T any](xs []T, name func(T) string) string {
	if len(xs) == 0 {
		return "none defined"
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = name(x)
	}
	return "defined: " + strings.Join(out, ", ")
}
