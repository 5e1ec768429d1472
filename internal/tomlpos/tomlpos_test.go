package tomlpos

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type dur time.Duration

func (d *dur) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = dur(v)
	return err
}

type item struct {
	Name string   `toml:"name"`
	Tags []string `toml:"tags"`
	Sub  []struct {
		N int `toml:"n"`
	} `toml:"sub"`
}

type target struct {
	Top   string `toml:"top"`
	Skip  string `toml:"-"`
	Inner struct {
		Count int     `toml:"count"`
		Wait  dur     `toml:"wait"`
		On    bool    `toml:"on"`
		Ratio float64 `toml:"ratio"`
	} `toml:"inner"`
	Items []item `toml:"item"`
}

func TestPaths(t *testing.T) {
	data := strings.Join([]string{
		`top = "x"`,                // 1
		`inner.count = 3`,          // 2
		`[[item]]`,                 // 3
		`name = "a"`,               // 4
		`[[item.sub]]`,             // 5
		`n = 1`,                    // 6
		`[[item]]`,                 // 7
		`tags = [`,                 // 8
		`  "t0",`,                  // 9
		`  "t1",`,                  // 10
		`]`,                        // 11
		`[[item.sub]]`,             // 12
		`[[item.sub]]`,             // 13
		`n = 2`,                    // 14
		`[[item]]`,                 // 15
		`sub = [{n = 5}, {n = 6}]`, // 16
	}, "\n")
	var v target
	d, err := Decode("t.toml", []byte(data), &v)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Items) != 3 || len(v.Items[1].Sub) != 2 || v.Items[1].Sub[1].N != 2 || v.Items[2].Sub[1].N != 6 || v.Inner.Count != 3 {
		t.Fatalf("decoded %+v", v)
	}
	for path, line := range map[string]int{
		"top":               1,
		"inner.count":       2,
		"inner":             1, // implicit (dotted-key) tables have no line of their own
		"item[0]":           3,
		"item[0].name":      4,
		"item[0].sub[0]":    5,
		"item[0].sub[0].n":  6,
		"item[1].tags":      8,
		"item[1].tags[1]":   10,
		"item[1].sub[1].n":  14,
		"item[1].sub[0]":    12,
		"item[1].sub[0].n":  12, // missing: its table's line
		"item[2].sub[1].n":  16,
		"item[9].name":      1, // no such element: nothing encloses it
		"nothing.at.all[3]": 1,
	} {
		if got := d.Line(path); got != line {
			t.Errorf("Line(%q) = %d, want %d", path, got, line)
		}
	}
	if !d.Has("item[1].tags[0]") || d.Has("item[1].name") {
		t.Error("Has: wrong answer")
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       string
	}{
		{"syntax at top level", "top = \"x\"\n= 5\n",
			`t.toml:2: (document): invalid character at start of key: U+003D '='`},
		{"syntax at end of input", "[inner]\ncount = ",
			`t.toml:2: inner.count: expected value, not end of input`},
		{"unknown key in nested array table", "[[item]]\n[[item.sub]]\nm = 1\n",
			`t.toml:3: item[0].sub[0].m: unknown key (did you mean "n"?)`},
		{"quoted key", "[inner]\n\"a.b\" = 1\n",
			`t.toml:2: inner."a.b": unknown key (valid keys: count, wait, on, ratio)`},
		{"ignored field is unknown", "Skip = \"x\"\n",
			`t.toml:1: Skip: unknown key (valid keys: top, inner, item)`},
		{"bool", "inner.on = \"yes\"\n",
			`t.toml:1: inner.on: expected a boolean (true or false), got string "yes"`},
		{"integer for float is fine", "inner.ratio = 2\n", ""},
		{"text type", "inner.wait = 5\n",
			`t.toml:1: inner.wait: expected a dur string, got integer 5`},
		{"text error", "inner.wait = \"5\"\n",
			`t.toml:1: inner.wait: time: missing unit in duration "5"`},
		{"long value", "top = 123456789012345678901234567890123456789012345678901234567890\n",
			`t.toml:1: top: expected a string, got integer 1234567890123456789012345678901234567890...`},
		{"several, in line order", "[inner]\ncount = \"x\"\n[[item]]\nnam = 1\n",
			"t.toml:2: inner.count: expected an integer, got string \"x\"\nt.toml:4: item[0].nam: unknown key (did you mean \"name\"?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v target
			_, err := Decode("t.toml", []byte(tc.data), &v)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestReportAndErrorsAs(t *testing.T) {
	var v target
	d, err := Decode("t.toml", []byte("[[item]]\nname = \"a\"\n[[item]]\n"), &v)
	if err != nil {
		t.Fatal(err)
	}
	if d.Err() != nil {
		t.Fatal("Err before any Report")
	}
	d.Report("item[1].name", "required")
	d.Report("item[0].name", "%q: bad", "a")
	err = d.Err()
	if want := "t.toml:2: item[0].name: \"a\": bad\nt.toml:3: item[1].name: required"; err.Error() != want {
		t.Errorf("got:\n%s\nwant:\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Key != "item[0].name" {
		t.Errorf("errors.As: %+v", e)
	}
}

func TestValueSpan(t *testing.T) {
	data := strings.Join([]string{
		`top = 'x' # comment`,
		`inner . count=3`,
		`[[item]]`,
		`name = """a"""`,
		`tags = [ "t0",`,
		`  # between`,
		`  "t1" , ]`,
		`[[item]]`,
		`tags = []`,
		`sub = [{n = 5}, { n = 6 }]`,
	}, "\n")
	var v target
	d, err := Decode("t.toml", []byte(data), &v)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
		inline     bool
	}{
		{"top", `'x'`, false},
		{"inner.count", `3`, false},
		{"item[0].name", `"""a"""`, false},
		{"item[0].tags", "[ \"t0\",\n  # between\n  \"t1\" , ]", false},
		{"item[0].tags[0]", `"t0"`, false},
		{"item[0].tags[1]", `"t1"`, false},
		{"item[1].tags", `[]`, false},
		{"item[1].sub", `[{n = 5}, { n = 6 }]`, false},
		{"item[1].sub[1].n", `6`, true},
	} {
		s, ok := d.ValueSpan(tc.path)
		if !ok {
			t.Errorf("ValueSpan(%q): not found", tc.path)
			continue
		}
		if got := data[s.Start:s.End]; got != tc.want || s.Inline != tc.inline {
			t.Errorf("ValueSpan(%q) = %q, inline %v; want %q, inline %v", tc.path, got, s.Inline, tc.want, tc.inline)
		}
	}
	// Headers, inline tables in arrays and missing keys have no span.
	for _, path := range []string{"item[0]", "item[1].sub[0]", "item[0].sub", "nothing"} {
		if s, ok := d.ValueSpan(path); ok {
			t.Errorf("ValueSpan(%q) = %+v, want none", path, s)
		}
	}
}
