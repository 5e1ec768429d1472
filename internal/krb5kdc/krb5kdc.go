// Package krb5kdc runs a throwaway MIT Kerberos realm for tests and
// benchmarks: a KDC database under one directory, krb5kdc as a child
// process on a loopback port, principals and keytabs made with
// kadmin.local. Nothing outside the directory is touched: the
// configuration reaches the tools through KRB5_CONFIG and
// KRB5_KDC_PROFILE, never /etc/krb5.conf. scripts/install-krb5.sh installs
// the tools from Debian. Keys it makes are for the test only and live and
// die with the directory.
package krb5kdc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The MIT tools, where Debian installs them.
const (
	kdcBinary    = "/usr/sbin/krb5kdc"
	kdbUtil      = "/usr/sbin/kdb5_util"
	kadminLocal  = "/usr/sbin/kadmin.local"
	kinitBinary  = "/usr/bin/kinit"
	startTimeout = 10 * time.Second
	cmdTimeout   = 20 * time.Second
)

// Installed returns nil when the KDC, kdb5_util, kadmin.local and kinit
// are there, else an error naming the one missing.
func Installed() error {
	for _, p := range []string{kdcBinary, kdbUtil, kadminLocal, kinitBinary} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("MIT Kerberos is not installed (%s missing): run scripts/install-krb5.sh", p)
		}
	}
	return nil
}

// KDC is one running realm.
type KDC struct {
	Realm string
	// Addr is the KDC's loopback host:port (TCP and UDP).
	Addr string
	// Dir holds the database, stash, configuration and log.
	Dir string
	// Krb5Conf is the client configuration (KRB5_CONFIG) naming this
	// KDC, for kinit, curl and gokrb5's client.
	Krb5Conf string
	cmd      *exec.Cmd
	done     chan struct{}
}

// Start creates realm's database in dir (which must exist and be empty of
// an earlier realm) and starts its KDC on a free loopback port. Stop it
// with Stop.
func Start(dir, realm string) (*KDC, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	k := &KDC{Realm: realm, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir,
		Krb5Conf: filepath.Join(dir, "krb5.conf")}
	kdcConf := fmt.Sprintf(`[kdcdefaults]
 kdc_listen = 127.0.0.1:%[2]d
 kdc_tcp_listen = 127.0.0.1:%[2]d
[realms]
 %[1]s = {
  database_name = %[3]s/principal
  key_stash_file = %[3]s/stash
  acl_file = %[3]s/kadm5.acl
  max_life = 10h
  max_renewable_life = 0
  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
 }
[logging]
 kdc = FILE:%[3]s/kdc.log
`, realm, port, dir)
	krb5Conf := fmt.Sprintf(`[libdefaults]
 default_realm = %[1]s
 dns_lookup_kdc = false
 dns_lookup_realm = false
 dns_canonicalize_hostname = false
 rdns = false
 udp_preference_limit = 1
 default_ccache_name = FILE:%[3]s/ccache
 default_tkt_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
 default_tgs_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
 permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
 forwardable = false
[realms]
 %[1]s = {
  kdc = %[2]s
  admin_server = %[2]s
 }
`, realm, k.Addr, dir)
	for name, data := range map[string]string{"kdc.conf": kdcConf, "krb5.conf": krb5Conf, "kadm5.acl": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			return nil, err
		}
	}
	if _, err := k.run(kdbUtil, "", "create", "-s", "-r", realm, "-P", "test-master-key-"+realm); err != nil {
		return nil, err
	}
	// -n: stay in the foreground, a child of this process.
	k.cmd = exec.Command(kdcBinary, "-n", "-r", realm)
	k.cmd.Env = k.env()
	k.cmd.Dir = dir
	k.cmd.SysProcAttr = childAttr()
	var out bytes.Buffer
	k.cmd.Stdout, k.cmd.Stderr = &out, &out
	if err := k.cmd.Start(); err != nil {
		return nil, fmt.Errorf("krb5kdc: %w", err)
	}
	k.done = make(chan struct{})
	go func() { _ = k.cmd.Wait(); close(k.done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", k.Addr, time.Second)
		if err == nil {
			c.Close()
			return k, nil
		}
		select {
		case <-k.done:
			log, _ := os.ReadFile(filepath.Join(dir, "kdc.log"))
			return nil, fmt.Errorf("krb5kdc exited: %s%s", out.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			k.Stop()
			return nil, fmt.Errorf("krb5kdc did not listen on %s within %s", k.Addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the KDC and waits (boundedly) for it to exit.
func (k *KDC) Stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(3 * time.Second):
		_ = k.cmd.Process.Kill()
		select {
		case <-k.done:
		case <-time.After(3 * time.Second):
		}
	}
}

// env is the environment the MIT tools run with: this realm's files only.
func (k *KDC) env() []string {
	return append(os.Environ(), "KRB5_CONFIG="+k.Krb5Conf, "KRB5_KDC_PROFILE="+filepath.Join(k.Dir, "kdc.conf"),
		"KRB5CCNAME=FILE:"+filepath.Join(k.Dir, "ccache"), "KRB5RCACHETYPE=none")
}

// Env is the environment for client tools (kinit, curl --negotiate) with
// the credentials cache ccache.
func (k *KDC) Env(ccache string) []string {
	return append(os.Environ(), "KRB5_CONFIG="+k.Krb5Conf, "KRB5CCNAME=FILE:"+ccache)
}

func (k *KDC) run(bin, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = k.env()
	cmd.Dir = k.Dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Admin runs one kadmin.local query ("addprinc -pw pw alice") and fails
// when kadmin.local reports an error (it exits 0 on most).
func (k *KDC) Admin(query string) error {
	out, err := k.run(kadminLocal, "", "-r", k.Realm, "-q", query)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "while ") || strings.HasPrefix(strings.TrimSpace(line), "kadmin.local: ") && strings.Contains(line, "rror") {
			return fmt.Errorf("kadmin.local -q %q: %s", query, out)
		}
	}
	return nil
}

// AddUser creates the principal name@Realm with password.
func (k *KDC) AddUser(name, password string) error {
	return k.Admin(fmt.Sprintf("addprinc -pw %s %s", password, name))
}

// AddService creates a service principal ("HTTP/mail.example.test") with a
// random key.
func (k *KDC) AddService(name string) error { return k.Admin("addprinc -randkey " + name) }

// ExportKeytab writes every key version the database holds for
// principal into the keytab at path (appending when it exists), without
// changing the keys (ktadd -norandkey).
func (k *KDC) ExportKeytab(path, principal string) error {
	return k.Admin(fmt.Sprintf("ktadd -norandkey -k %s %s", path, principal))
}

// Rekey gives principal a new random key under the next kvno, keeping the
// old ones in the database (cpw -randkey -keepold), as rotating an
// alternate service account's password does.
func (k *KDC) Rekey(principal string) error {
	return k.Admin("cpw -randkey -keepold " + principal)
}

// Kinit gets a ticket-granting ticket for principal into the credentials
// cache ccache, valid for lifetime (kinit -l; 0 for the realm's default).
func (k *KDC) Kinit(ccache, principal, password string, lifetime time.Duration) error {
	args := []string{"-c", "FILE:" + ccache}
	if lifetime > 0 {
		args = append(args, "-l", strconv.Itoa(int(lifetime/time.Second))+"s")
	}
	args = append(args, principal)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, kinitBinary, args...)
	cmd.Env = k.Env(ccache)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kinit %s: %w: %s", principal, err, out)
	}
	return nil
}

func freePort() (int, error) {
	// A port free for both TCP and UDP: the KDC listens on both.
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("krb5kdc: no free loopback port")
}
