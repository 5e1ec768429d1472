package cli

import (
	"fmt"
	"slices"
	"strings"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/kerberos"
)

// checkKeytabs loads the Kerberos keytabs cfg names, as the gateway does on
// start when a protocol accepts negotiate, and warns about directory
// principals of realms the gateway would refuse (kerberos_realms, or by
// default the keytabs' own realms): such users could never sign in with
// Negotiate.
func checkKeytabs(cfg *config.Config, dir *directory.Directory) []finding {
	if !cfg.NegotiateUsed() {
		return nil
	}
	var out []finding
	realms := map[string]bool{}
	load := func(key, path string) {
		kt, err := kerberos.LoadKeytab(cfg.Resolve(path))
		if err != nil {
			out = append(out, finding{&config.Error{File: cfg.Path, Line: cfg.Line(key), Key: key,
				Message: strings.TrimPrefix(err.Error(), "keytab: ")}, false})
			return
		}
		for _, r := range kt.Realms() {
			realms[r] = true
		}
	}
	if cfg.Auth.Keytab != "" {
		load("auth.keytab", cfg.Auth.Keytab)
	}
	for i, l := range cfg.Listeners {
		if l.Keytab != "" {
			load(fmt.Sprintf("listener[%d].keytab", i), l.Keytab)
		}
	}
	if len(out) > 0 {
		return out
	}
	accepted := func(r string) bool { return realms[r] }
	if len(cfg.Auth.KerberosRealms) > 0 {
		accepted = func(r string) bool { return slices.Contains(cfg.Auth.KerberosRealms, r) }
	}
	for _, u := range dir.Users {
		for _, p := range u.KerberosPrincipals {
			if r := p[strings.LastIndexByte(p, '@')+1:]; !accepted(r) {
				out = append(out, finding{&config.Error{File: cfg.Path, Line: cfg.Line("auth.kerberos_realms"), Key: "auth.kerberos_realms",
					Message: fmt.Sprintf("warning: user %s's principal %s is of realm %s, which is not accepted: it cannot sign in with Negotiate", u.Login, p, r)}, true})
			}
		}
	}
	return out
}
