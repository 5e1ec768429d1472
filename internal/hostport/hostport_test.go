package hostport

import (
	"errors"
	"testing"
)

func TestCanonicalHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"::1", "::1", true},
		{"0:0::1", "::1", true},
		{"fe80::1%eth0", "fe80::1%eth0", true},
		{"Mail.Example.TEST", "mail.example.test", true},
		{"localhost", "localhost", true},
		{"mbx-1.example.test.", "mbx-1.example.test.", true},
		{"", "", false},
		{"10.0.0.300", "", false},
		{"127.1", "", false},
		{"bad_host", "", false},
		{"-mbx.example.test", "", false},
		{"mbx-.example.test", "", false},
		{"a..b", "", false},
		{"[::1]", "", false},
		{"1:2", "", false},
	} {
		got, ok := CanonicalHost(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  string
	}{
		{"1", 1, ""},
		{"443", 443, ""},
		{"65535", 65535, ""},
		{"08080", 8080, ""},
		{"0", 0, "port out of range"},
		{"65536", 0, "port out of range"},
		{"99999999999999999999", 0, "port out of range"},
		{"", 0, `port "" is not a number`},
		{"+80", 0, `port "+80" is not a number`},
		{"http", 0, `port "http" is not a number`},
	} {
		got, err := ParsePort(tc.in)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if got != tc.want || msg != tc.err {
			t.Errorf("ParsePort(%q) = %d, %q; want %d, %q", tc.in, got, msg, tc.want, tc.err)
		}
		if tc.err == "port out of range" && !errors.Is(err, ErrPortRange) {
			t.Errorf("ParsePort(%q): error is not ErrPortRange", tc.in)
		}
	}
}
