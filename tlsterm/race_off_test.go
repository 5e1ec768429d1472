//go:build !race

package tlsterm

const raceEnabled = false
