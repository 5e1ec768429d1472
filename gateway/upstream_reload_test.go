package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway/config"
)

func caPEM(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestUpstreamCAReloadKeepsOldOnError: every TLS endpoint gets a config
// with the new roots (and a new session cache) after a good reload, and
// keeps it after a bad one.
func TestUpstreamCAReloadKeepsOldOnError(t *testing.T) {
	tmp := t.TempDir()
	caFile := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(caFile, caPEM(t, "one"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(tmp, "f.toml"), []byte("directory = \"d.toml\"\n[backend]\ntls_ca = \"ca.pem\"\n"+
		"[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[protocol]]\nname = \"owa\"\npath_prefix = \"/owa\"\nbackend_port = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	var servers strings.Builder
	for i, name := range []string{"a.example.test", "b.example.test"} {
		fmt.Fprintf(&servers, "[[server]]\nname = \"s%d\"\naddress = \"127.0.0.%d:443\"\nsite = \"s\"\ntls = true\ntls_server_name = %q\n", i, i+1, name)
	}
	dir, err := directory.Parse("d.toml", []byte("[[site]]\nname = \"s\"\n"+servers.String()))
	if err != nil {
		t.Fatal(err)
	}
	u, err := newUpstreamTLS(cfg, dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := u.forServer(dir.Servers[0]), u.forServer(dir.Servers[1])
	first := pa.Current()
	if first.RootCAs == nil || first.ServerName != "a.example.test" || pb.Current().ServerName != "b.example.test" {
		t.Fatalf("initial configs %+v %+v", first, pb.Current())
	}
	if changed, err := u.reload(); changed || err != nil {
		t.Fatalf("reload of an unchanged file: %v, %v", changed, err)
	}
	if err := os.WriteFile(caFile, caPEM(t, "two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := u.reload(); !changed || err != nil {
		t.Fatalf("reload of a new bundle: %v, %v", changed, err)
	}
	second := pa.Current()
	if second == first || second.RootCAs.Equal(first.RootCAs) || second.ClientSessionCache == first.ClientSessionCache ||
		second.ServerName != "a.example.test" || pb.Current().ServerName != "b.example.test" || pb.Current().RootCAs != second.RootCAs {
		t.Fatalf("after the reload: %+v", second)
	}
	for _, bad := range []string{"garbage\n", ""} {
		if bad == "" {
			os.Remove(caFile)
		} else if err := os.WriteFile(caFile, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if changed, err := u.reload(); changed || err == nil || !strings.HasPrefix(err.Error(), "backend.tls_ca: ") {
			t.Errorf("reload of %q: %v, %v", bad, changed, err)
		}
		if pa.Current() != second || pb.Current().RootCAs != second.RootCAs {
			t.Errorf("a refused bundle (%q) replaced the one in use", bad)
		}
	}
}
