//go:build race

package tlsterm

const raceEnabled = true
