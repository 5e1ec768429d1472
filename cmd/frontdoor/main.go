// Command frontdoor is a stateless client-access gateway for mail systems.
// Everything it does is in package frontdoor/cli; see `frontdoor --help`.
package main

import (
	"os"

	"frontdoor/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
