package identity

import (
	"errors"
	"fmt"
	"io"
	"os"

	"frontdoor/internal/atomicfile"
)

// maxKeyFileSize bounds what a key file may hold; 100 ML-DSA-44 keys take
// about 200 KB.
const maxKeyFileSize = 1 << 20

// readKeyFile reads a key file, refusing oversized ones.
func readKeyFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxKeyFileSize {
		return nil, nil, fmt.Errorf("larger than %d bytes", maxKeyFileSize)
	}
	return data, fi, nil
}

// ReadPrivateKeyFile reads a gateway's private JWK Set, in file order (the
// first key signs). A file that group or others may read is refused: the
// keys in it let anyone mint any user's identity, so a lax mode is a
// problem an operator must fix (chmod 600), not a detail to log.
func ReadPrivateKeyFile(path string) ([]*PrivateKey, error) {
	data, fi, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: private key file %s: %w", path, err)
	}
	// Parse first: a public set given by mistake deserves that error
	// rather than one about its mode.
	keys, err := parsePrivateKeys(data)
	if err != nil {
		return nil, fmt.Errorf("identity: private key file %s: %w", path, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("identity: private key file %s: mode %#o lets group or others read private keys; want 0600 (chmod 600 %s)",
			path, perm, path)
	}
	return keys, nil
}

// ReadPublicKeyFile reads a public JWK Set (see ParsePublicKeys).
func ReadPublicKeyFile(path string) ([]*PublicKey, error) {
	data, _, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: public key file %s: %w", path, err)
	}
	keys, err := parsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("identity: public key file %s: %w", path, err)
	}
	return keys, nil
}

// RotateKeyFile puts k first in the private key file at path, creating the
// file if it does not exist, and keeps at most keep keys: k and the
// keep-1 newest before it. It returns the keys now in the file, in order.
// An existing file must load (ReadPrivateKeyFile) and must not hold k's key
// id already; otherwise it is left alone. The file is replaced atomically
// with mode 0600.
//
// Rotation, for an array of gateways and its backends: add the new key
// with RotateKeyFile, publish the public set (WritePublicKeyFile) to every
// backend, only then give the new private file to the gateways (they sign
// with the first key), and drop the old key at the next rotation, once
// assertions signed with it have expired.
func RotateKeyFile(path string, k *PrivateKey, keep int) ([]*PrivateKey, error) {
	if keep < 1 {
		return nil, fmt.Errorf("identity: keep %d keys: want at least 1", keep)
	}
	var old []*PrivateKey
	if _, err := os.Stat(path); err == nil {
		if old, err = ReadPrivateKeyFile(path); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("identity: private key file %s: %w", path, err)
	}
	for _, o := range old {
		if o.KeyID() == k.KeyID() {
			return nil, fmt.Errorf("identity: private key file %s already holds key id %q", path, k.KeyID())
		}
	}
	keys := append([]*PrivateKey{k}, old[:min(len(old), keep-1)]...)
	if err := writeKeyFile(path, marshalPrivateKeys(keys), 0o600); err != nil {
		return nil, err
	}
	return keys, nil
}

// WritePublicKeyFile writes keys as a public JWK Set to path, atomically,
// with mode 0644: public keys are meant to be copied around.
func WritePublicKeyFile(path string, keys []*PublicKey) error {
	if len(keys) == 0 {
		return errors.New("identity: no keys to write")
	}
	return writeKeyFile(path, MarshalPublicKeys(keys), 0o644)
}

// writeKeyFile replaces a key file atomically (internal/atomicfile).
func writeKeyFile(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.Write(path, data, mode); err != nil {
		return fmt.Errorf("identity: %s: %w", path, err)
	}
	return nil
}
