package directory

import "testing"

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		str  string
	}{
		{"15.2.1544.4", Version{15, 2, 1544, 4}, "15.2.1544.4"},
		{"15.02.1544.004", Version{15, 2, 1544, 4}, "15.2.1544.4"},
		{"15", Version{15}, "15.0.0.0"},
		{"15.1", Version{15, 1}, "15.1.0.0"},
		{"65535.0.65535.1", Version{65535, 0, 65535, 1}, "65535.0.65535.1"},
		{"0", Version{}, "0.0.0.0"},
	} {
		got, err := ParseVersion(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseVersion(%q) = %v (%s), %v; want %v (%s)", tc.in, got, got, err, tc.want, tc.str)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty version"},
		{"15.2.1544.4.1", "more than 4 components"},
		{"15..2", `component 2 ("") is not a decimal number`},
		{"15.", `component 2 ("") is not a decimal number`},
		{".15", `component 1 ("") is not a decimal number`},
		{"15.2a", `component 2 ("2a") is not a decimal number`},
		{"v15", `component 1 ("v15") is not a decimal number`},
		{"+15", `component 1 ("+15") is not a decimal number`},
		{"-1", `component 1 ("-1") is not a decimal number`},
		{" 15", `component 1 (" 15") is not a decimal number`},
		{"15.65536", "component 2 (65536) is larger than 65535"},
		{"99999999999999999999", "component 1 (99999999999999999999) is larger than 65535"},
	} {
		if _, err := ParseVersion(tc.in); err == nil || err.Error() != tc.want {
			t.Errorf("ParseVersion(%q): err = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	ordered := []string{"0.0.0.1", "8.3.83.6", "15", "15.0.1497.2", "15.1.2507.6", "15.2", "15.2.986.5", "15.2.1544.4", "15.2.1544.11", "15.10"}
	for i, a := range ordered {
		va, _ := ParseVersion(a)
		for j, b := range ordered {
			vb, _ := ParseVersion(b)
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := Compare(va, vb); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestServerVersion(t *testing.T) {
	d, err := Parse("d.toml", withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "a"`, `version = "15.1.2507.6"`))
	if err != nil {
		t.Fatal(err)
	}
	if v := d.Server("m2").Version; v != (Version{15, 1, 2507, 6}) {
		t.Errorf("m2 version %v", v)
	}
	if v := d.Server("m1").Version; v != (Version{}) {
		t.Errorf("m1 (no version) = %v, want zero", v)
	}
	server := func(line string) []byte {
		return withBase(`[[server]]`, `name = "m2"`, `address = "10.0.0.2"`, `site = "a"`, line)
	}
	for _, tc := range []struct{ line, want string }{
		{`version = ""`, `must not be empty (leave it out when the version is unknown)`},
		{`version = "15.2.1544.4.0"`, `"15.2.1544.4.0": more than 4 components; want up to 4 dot-separated numbers, e.g. "15.2.1544.4"`},
		{`version = "15.x"`, `"15.x": component 2 ("x") is not a decimal number; want up to 4 dot-separated numbers, e.g. "15.2.1544.4"`},
		{`version = "0.0"`, `"0.0": the zero version means unknown; leave the key out instead`},
		{`version = 15.2`, `expected a string, got float 15.2`},
	} {
		t.Run(tc.line, func(t *testing.T) {
			checkErrors(t, server(tc.line), []string{`d.toml:19: server[1].version: ` + tc.want})
		})
	}
}
