package tlsterm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteSelfSigned writes a self-signed ECDSA P-256 development certificate
// for hosts to dir, as cert.pem and key.pem (PKCS #8, mode 0600), and
// returns their paths. Host names become DNS subjectAltNames and IP
// addresses IP subjectAltNames (RFC 5280 section 4.2.1.6); the first host
// is also the subject's common name. The certificate is valid from an hour
// ago for validFor. Clients trust it by adding cert.pem to their roots; it
// is not for production.
func WriteSelfSigned(dir string, hosts []string, validFor time.Duration) (certPath, keyPath string, err error) {
	if len(hosts) == 0 {
		return "", "", errors.New("tlsterm: self-signed certificate needs at least one host")
	}
	if validFor <= 0 {
		return "", "", errors.New("tlsterm: self-signed certificate needs a positive validity")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"frontdoor development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h = strings.TrimSuffix(strings.TrimSpace(h), "."); h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writePEM(keyPath, "PRIVATE KEY", pk, 0o600); err != nil {
		return "", "", err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("tlsterm: %w", err)
	}
	// An existing file keeps its mode through O_CREATE; set it.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("tlsterm: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("tlsterm: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tlsterm: %s: %w", path, err)
	}
	return nil
}
