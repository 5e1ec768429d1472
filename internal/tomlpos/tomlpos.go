// Package tomlpos decodes TOML files strictly into Go structs and reports every
// problem in the form operators and editors understand:
//
//	FILE:LINE: KEY: message
//
// KEY is a path that names elements of arrays of tables by index, so the second
// [[listener]] table's address is "listener[1].address" wherever it was
// written ([[listener]] tables, inline tables or dotted keys).
//
// go-toml's decoder reports positions but not such paths, and has no API that
// maps a key to its line, which semantic validation (duplicates, dangling
// references, ranges) needs. So Decode first walks the document with go-toml's
// position-preserving parser and records, for every key, array element and
// table header, its path, byte range and line. That index drives three things:
//
//   - syntax errors, found by the same walk;
//   - a check of every key against the target type: keys must match a field's
//     toml tag exactly (go-toml alone would accept "MAX_CONNECTIONS" for
//     max_connections), and the value's TOML type must fit the field (go-toml
//     alone would store `idle = 75` into a time.Duration-like integer field as
//     75 nanoseconds, and stops at the first mismatch);
//   - mapping the remaining go-toml decode errors (duplicate keys, integer
//     overflow, TextUnmarshaler failures) back to a path.
//
// After Decode, the caller validates the values and reports problems by path
// with Doc.Report; a path that is not in the file (a missing required key) is
// reported at the line of its nearest enclosing table.
package tomlpos

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Error is one problem in one file.
type Error struct {
	File    string // file name as given to Decode
	Line    int    // 1-based line number
	Key     string // key path, e.g. "listener[1].address"
	Message string // what is wrong, without the position
}

// Error formats the problem as FILE:LINE: KEY: message.
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Message)
}

// Errors is every problem found in one file, in line order. Decode and
// Doc.Err return it so that an operator fixes a file in one pass rather
// than one error per attempt.
type Errors []*Error

// Error returns one FILE:LINE: KEY: message line per problem.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes each *Error to errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// segment is one step of a key path: a key name (index < 0), or an index
// into an array.
type segment struct {
	name  string
	index int
}

func named(name string) segment { return segment{name: name, index: -1} }

// entry is one located item of the document.
type entry struct {
	path  string
	segs  []segment
	kind  unstable.Kind // value kind; Table or ArrayTable for headers
	raw   string        // value text as written, for messages (scalars only)
	line  int
	start int // byte range in the document, for mapping decoder errors
	end   int
	// The value's own byte range (quotes and brackets included) when it
	// is known: for the value of a key, and for a scalar array element.
	vstart, vend int
	hasValue     bool
	inline       bool // a key inside an inline table
}

// Doc is the position index of one decoded document; validators use it to
// report problems by key path.
type Doc struct {
	name       string
	data       []byte
	lineStarts []int
	entries    []entry
	byPath     map[string]int // path -> index of its first entry
	errs       Errors
}

// Decode parses data (named name in messages) and decodes it into v, which
// must be a non-nil pointer to a struct. Fields of *v that the document does
// not set keep their values, so callers pre-fill defaults. On failure the
// error is Errors and the Doc is nil.
func Decode(name string, data []byte, v any) (*Doc, error) {
	d := &Doc{name: name, data: data, byPath: make(map[string]int)}
	d.lineStarts = append(d.lineStarts, 0)
	for i, c := range data {
		if c == '\n' {
			d.lineStarts = append(d.lineStarts, i+1)
		}
	}
	if err := d.index(); err != nil {
		return nil, Errors{err}
	}
	d.checkTypes(reflect.TypeOf(v).Elem())
	if err := d.Err(); err != nil {
		return nil, err
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		d.decodeErrors(err)
		if err := d.Err(); err != nil {
			return nil, err
		}
		return nil, Errors{{File: name, Line: 1, Key: "(document)", Message: err.Error()}}
	}
	return d, nil
}

// Report records a problem with the value at path. When path is not in the
// document (a required key is missing) the line is that of the nearest
// enclosing table or key that is, else line 1.
func (d *Doc) Report(path, format string, args ...any) {
	d.reportAt(d.Line(path), path, format, args...)
}

func (d *Doc) reportAt(line int, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.name, Line: line, Key: path, Message: fmt.Sprintf(format, args...)})
}

// Err returns the problems reported so far as Errors sorted by line, or nil.
func (d *Doc) Err() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	return d.errs
}

// Has reports whether path was written in the document.
func (d *Doc) Has(path string) bool {
	_, ok := d.byPath[path]
	return ok
}

// Required reports an empty required string at path ("must not be empty"
// when the key is present, "required" when it is missing) and returns
// whether s is set.
func (d *Doc) Required(path, s string) bool {
	if s != "" {
		return true
	}
	if d.Has(path) {
		d.Report(path, "must not be empty")
	} else {
		d.Report(path, "required")
	}
	return false
}

// Span is where a value was written in the document.
type Span struct {
	// Start and End are the byte offsets of the value as written, quotes
	// and brackets included: data[Start:End] is `"mbx1"` or `["a", "b"]`.
	Start, End int
	// Inline is set for a key inside an inline table, where a sibling
	// key goes on the same line after a comma rather than on a line of
	// its own.
	Inline bool
}

// ValueSpan returns where the value at path was written, for tools that
// edit a file in place and keep everything else (comments, order, layout)
// as it is. It knows the value of every key and every scalar array
// element; ok is false for other paths (table headers, arrays or inline
// tables that are elements of an array) and for paths not in the document.
func (d *Doc) ValueSpan(path string) (s Span, ok bool) {
	i, found := d.byPath[path]
	if !found || !d.entries[i].hasValue {
		return Span{}, false
	}
	e := &d.entries[i]
	return Span{Start: e.vstart, End: e.vend, Inline: e.inline}, true
}

// Line returns the line of path, or of its nearest ancestor present in the
// document, or 1.
func (d *Doc) Line(path string) int {
	for path != "" {
		if i, ok := d.byPath[path]; ok {
			return d.entries[i].line
		}
		cut := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
		if cut < 0 {
			break
		}
		path = path[:cut]
	}
	return 1
}

// lineAt returns the 1-based line of byte offset off.
func (d *Doc) lineAt(off int) int {
	return sort.SearchInts(d.lineStarts, off+1)
}

// offset returns the byte offset of a slice of d.data.
func (d *Doc) offset(b []byte) int {
	off := cap(d.data) - cap(b)
	if off < 0 || off > len(d.data) {
		return len(d.data)
	}
	return off
}

// index walks the document once, recording every key with its path and line.
// It returns the first syntax error.
func (d *Doc) index() *Error {
	var p unstable.Parser
	p.Reset(d.data)
	// arrays counts the elements of each array of tables seen so far: a
	// later [a.b] or [[a.b]] refers into a's last element.
	arrays := make(map[string]int)
	var table []segment
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts := keyParts(e)
			segs := resolve(nil, parts[:len(parts)-1], arrays)
			segs = append(segs, named(parts[len(parts)-1]))
			if e.Kind == unstable.ArrayTable {
				base := render(segs)
				segs = append(segs, segment{index: arrays[base]})
				arrays[base]++
			}
			start, end := keyRange(e)
			d.add(segs, e.Kind, "", start, end)
			table = segs
		case unstable.KeyValue:
			d.keyValue(table, e, arrays, false)
		}
	}
	if err := p.Error(); err != nil {
		var perr *unstable.ParserError
		if !errors.As(err, &perr) {
			return &Error{File: d.name, Line: 1, Key: "(document)", Message: err.Error()}
		}
		off := d.offset(perr.Highlight)
		line := d.lineAt(off)
		return &Error{File: d.name, Line: line, Key: d.guessKey(table, line), Message: perr.Message}
	}
	return nil
}

// keyValue records a key-value expression (top-level, or inside an inline
// table when inline is set) whose enclosing table is at table.
func (d *Doc) keyValue(table []segment, kv *unstable.Node, arrays map[string]int, inline bool) {
	segs := resolve(table, keyParts(kv), arrays)
	start, end := int(kv.Raw.Offset), int(kv.Raw.Offset+kv.Raw.Length)
	n := len(d.entries)
	d.value(segs, kv.Value(), start, end, arrays)
	// The expression runs from the key to the end of the value; the value
	// starts after the key, the "=" and the blanks around it.
	_, vstart := keyRange(kv)
	for vstart < end && (d.data[vstart] == ' ' || d.data[vstart] == '\t' || d.data[vstart] == '=') {
		vstart++
	}
	e := &d.entries[n]
	e.vstart, e.vend, e.hasValue, e.inline = vstart, end, true, inline
}

// value records the value v found at segs, spanning [start, end), and
// recurses into arrays and inline tables.
func (d *Doc) value(segs []segment, v *unstable.Node, start, end int, arrays map[string]int) {
	raw := ""
	if v.Kind != unstable.Array && v.Kind != unstable.InlineTable {
		raw = string(d.data[v.Raw.Offset : v.Raw.Offset+v.Raw.Length])
	}
	d.add(segs, v.Kind, raw, start, end)
	if raw != "" {
		e := &d.entries[len(d.entries)-1]
		e.vstart, e.vend, e.hasValue = int(v.Raw.Offset), int(v.Raw.Offset+v.Raw.Length), true
	}
	switch v.Kind {
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				d.keyValue(segs, c, arrays, true)
			}
		}
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			s, e := d.span(c, start)
			d.value(append(slices.Clip(segs), segment{index: i}), c, s, e, arrays)
			i++
		}
	}
}

// span returns the byte range of value node n. Arrays carry no range of
// their own; theirs runs from their first to their last element (or is
// empty at fallback if they have none).
func (d *Doc) span(n *unstable.Node, fallback int) (int, int) {
	if n.Raw.Length > 0 {
		return int(n.Raw.Offset), int(n.Raw.Offset + n.Raw.Length)
	}
	start, end := -1, fallback
	for it := n.Children(); it.Next(); {
		s, e := d.span(it.Node(), fallback)
		if start < 0 {
			start = s
		}
		end = e
	}
	if start < 0 {
		start = fallback
	}
	return start, end
}

func (d *Doc) add(segs []segment, kind unstable.Kind, raw string, start, end int) {
	path := render(segs)
	if _, ok := d.byPath[path]; !ok {
		d.byPath[path] = len(d.entries)
	}
	d.entries = append(d.entries, entry{
		path: path, segs: slices.Clone(segs), kind: kind, raw: raw,
		line: d.lineAt(start), start: start, end: end,
	})
}

// guessKey names the key on a line that failed to parse: the table being
// filled plus the bare key before '=' when the line has one.
func (d *Doc) guessKey(table []segment, line int) string {
	text := d.data[d.lineStarts[line-1]:]
	if i := bytes.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	text = bytes.TrimSpace(text)
	if len(text) > 0 && text[0] == '[' {
		name := strings.Trim(string(text), "[] \t")
		if name = strings.TrimSpace(strings.SplitN(name, "]", 2)[0]); isBareDotted(name) {
			return name
		}
	} else if k, _, ok := bytes.Cut(text, []byte("=")); ok {
		if k := strings.ReplaceAll(string(bytes.TrimSpace(k)), " ", ""); isBareDotted(k) {
			if len(table) == 0 {
				return k
			}
			return render(table) + "." + k
		}
	}
	if len(table) == 0 {
		return "(document)"
	}
	return render(table)
}

func isBareDotted(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || strings.IndexFunc(part, func(r rune) bool { return r >= 0x80 || !isBareKeyChar(byte(r)) }) >= 0 {
			return false
		}
	}
	return true
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// keyParts returns the parts of a key-value's or header's (dotted) key.
func keyParts(n *unstable.Node) []string {
	var parts []string
	for it := n.Key(); it.Next(); {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// keyRange returns the byte range of a header's key.
func keyRange(n *unstable.Node) (int, int) {
	start, end := -1, 0
	for it := n.Key(); it.Next(); {
		r := it.Node().Raw
		if start < 0 {
			start = int(r.Offset)
		}
		end = int(r.Offset + r.Length)
	}
	return start, end
}

// resolve appends the key parts to base, stepping into the last element of
// every array of tables on the way.
func resolve(base []segment, parts []string, arrays map[string]int) []segment {
	segs := slices.Clip(base)
	for _, p := range parts {
		segs = append(segs, named(p))
		if n, ok := arrays[render(segs)]; ok {
			segs = append(segs, segment{index: n - 1})
		}
	}
	return segs
}

// render writes a path: names joined by dots (quoted when they are not bare
// keys), indices in brackets.
func render(segs []segment) string {
	var b strings.Builder
	for i, s := range segs {
		switch {
		case s.index >= 0:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			if isBareDotted(s.name) && !strings.Contains(s.name, ".") {
				b.WriteString(s.name)
			} else {
				b.WriteString(strconv.Quote(s.name))
			}
		}
	}
	return b.String()
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkTypes reports every key that names no field of root (matching the toml
// tag exactly) and every value whose TOML type cannot be stored in its field.
func (d *Doc) checkTypes(root reflect.Type) {
	reported := make(map[string]bool) // unknown prefixes, reported once
	for _, e := range d.entries {
		t, ok := d.fieldType(root, e, reported)
		if !ok {
			continue
		}
		if want := describe(t); !fits(e.kind, t) {
			got := kindName(e.kind)
			if e.raw != "" {
				got += " " + truncate(e.raw, 40)
			}
			d.reportAt(e.line, e.path, "expected %s, got %s", want, got)
		}
	}
}

// fieldType resolves e's path in root. It reports unknown keys, and returns
// false when there is nothing (more) to check for e.
func (d *Doc) fieldType(root reflect.Type, e entry, reported map[string]bool) (reflect.Type, bool) {
	t := root
	for i, s := range e.segs {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if s.index >= 0 {
			if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
				// The parent's type mismatch is reported on the parent,
				// except for [[x]] where x has no entry of its own.
				if e.kind == unstable.ArrayTable && i == len(e.segs)-1 {
					d.reportAt(e.line, render(e.segs[:i]), "expected %s, got array of tables", describe(t))
				}
				return nil, false
			}
			t = t.Elem()
			continue
		}
		if t.Kind() != reflect.Struct || implementsText(t) {
			return nil, false // mismatch, reported on the parent
		}
		f, ok := fieldByTag(t, s.name)
		if !ok {
			prefix := render(e.segs[:i+1])
			if !reported[prefix] {
				reported[prefix] = true
				what := "unknown key"
				if i < len(e.segs)-1 || e.kind == unstable.Table || e.kind == unstable.ArrayTable {
					what = "unknown table"
				}
				d.reportAt(e.line, prefix, "%s%s", what, suggest(t, s.name))
			}
			return nil, false
		}
		t = f.Type
	}
	return t, true
}

// fits reports whether a TOML value of kind k can be stored in a field of
// type t. Headers count as tables.
func fits(k unstable.Kind, t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if implementsText(t) {
		return k == unstable.String
	}
	switch t.Kind() {
	case reflect.String:
		return k == unstable.String
	case reflect.Bool:
		return k == unstable.Bool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return k == unstable.Integer
	case reflect.Float32, reflect.Float64:
		return k == unstable.Float || k == unstable.Integer
	case reflect.Slice, reflect.Array:
		return k == unstable.Array
	case reflect.Struct, reflect.Map:
		return k == unstable.Table || k == unstable.InlineTable || k == unstable.ArrayTable
	case reflect.Interface:
		return true
	}
	return false
}

func implementsText(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(textUnmarshaler)
}

// describe names what a field of type t expects, for messages.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if implementsText(t) {
		// A named text type describes itself: Duration -> "a duration string".
		return "a " + strings.ToLower(t.Name()) + " string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if e := t.Elem(); e.Kind() == reflect.Struct && !implementsText(e) {
			return "an array of tables"
		}
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describe(t.Elem()), "a "), "an ") + "s"
	case reflect.Struct, reflect.Map:
		return "a table"
	}
	return t.String()
}

// kindName names a TOML value kind for messages.
func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "string"
	case unstable.Bool:
		return "boolean"
	case unstable.Integer:
		return "integer"
	case unstable.Float:
		return "float"
	case unstable.Array:
		return "array"
	case unstable.InlineTable:
		return "inline table"
	case unstable.Table:
		return "table"
	case unstable.ArrayTable:
		return "array of tables"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "date-time"
	}
	return strings.ToLower(k.String())
}

// truncate shortens a value quoted in a message to its first line and n bytes.
func truncate(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < n {
		return s[:i] + "..."
	}
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// tomlFields returns the toml keys of struct type t with their fields.
func tomlFields(t reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		f.Name = name
		out = append(out, f)
	}
	return out
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for _, f := range tomlFields(t) {
		if f.Name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggest returns " (did you mean "x"?)" for the valid key closest to key,
// or the list of valid keys when none is close.
func suggest(t reflect.Type, key string) string {
	fields := tomlFields(t)
	if len(fields) == 0 {
		return ""
	}
	best, bestDist := "", len(key)/3+2 // typos: a few edits, scaled by length
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
		if dist := editDistance(strings.ToLower(key), strings.ToLower(f.Name)); dist < bestDist {
			best, bestDist = f.Name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (valid keys: " + strings.Join(names, ", ") + ")"
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// typeMismatch matches go-toml's type errors, which checkTypes should have
// caught first; kept so that a case it misses still reads well.
var typeMismatch = regexp.MustCompile(`^cannot decode TOML (.+?) into (?:struct field \S+ of type )?(.+)$`)

// decodeErrors reports go-toml's decode error(s) at the path of the
// innermost entry containing each error's position.
func (d *Doc) decodeErrors(err error) {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		for i := range strict.Errors {
			d.decodeError(&strict.Errors[i])
		}
		return
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		d.decodeError(de)
	}
}

func (d *Doc) decodeError(de *toml.DecodeError) {
	line, col := de.Position()
	msg := de.Error()
	for strings.HasPrefix(msg, "toml: ") {
		msg = strings.TrimPrefix(msg, "toml: ")
	}
	if m := typeMismatch.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("expected %s, got %s", m[2], m[1])
	}
	key := strings.Join(de.Key(), ".")
	if line >= 1 && line <= len(d.lineStarts) {
		off := d.lineStarts[line-1] + col - 1
		best := -1
		for i, e := range d.entries {
			if e.start <= off && off < max(e.end, e.start+1) &&
				(best < 0 || e.end-e.start <= d.entries[best].end-d.entries[best].start) {
				best = i
			}
		}
		if best >= 0 {
			key = d.entries[best].path
		}
	}
	if key == "" {
		key = "(document)"
	}
	d.errs = append(d.errs, &Error{File: d.name, Line: max(line, 1), Key: key, Message: msg})
}
