// Package examples holds frontdoor's example configuration and directory.
// They are embedded in the binary: `frontdoor run` without --config serves
// with them (this is what `make run` does), and tests parse them so that the
// examples never rot.
package examples

import _ "embed"

// Config is examples/frontdoor.toml, the embedded default configuration.
//
//go:embed frontdoor.toml
var Config []byte

// Directory is examples/directory.toml, the directory the embedded default
// configuration points at.
//
//go:embed directory.toml
var Directory []byte
