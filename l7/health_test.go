package l7

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// A health page's four serializations are well-framed responses: the GET
// ones carry the body, the HEAD ones the same head and no body, and only
// the close variants announce the close.
func TestHealthPageSerializations(t *testing.T) {
	const body = "200 OK<br/>gw-1"
	p := NewHealthPage(200, body)
	for _, tc := range []struct {
		head, close bool
	}{{false, false}, {false, true}, {true, false}, {true, true}} {
		raw := p.response(tc.head, tc.close)
		method := "GET"
		if tc.head {
			method = "HEAD"
		}
		// A second response behind it must parse too: the framing is exact.
		br := bufio.NewReader(bytes.NewReader(append(append([]byte(nil), raw...), raw...)))
		for i := 0; i < 2; i++ {
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("%s close=%v: %v in %q", method, tc.close, err, raw)
			}
			got, _ := io.ReadAll(resp.Body)
			wantBody := body + "\n"
			if tc.head {
				wantBody = ""
			}
			if resp.StatusCode != 200 || string(got) != wantBody || resp.Close != tc.close ||
				resp.ContentLength != int64(len(body)+1) || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s close=%v: %d close=%v length=%d body %q", method, tc.close, resp.StatusCode, resp.Close, resp.ContentLength, got)
			}
		}
	}
	if p.Status() != 200 || NewHealthPage(503, "x").Status() != 503 {
		t.Error("Status")
	}
}

func TestIsHealthPath(t *testing.T) {
	for path, want := range map[string]bool{
		"/healthcheck.htm": true, "/HealthCheck.htm": true, "/healthcheck.htm/": false,
		"/x/healthcheck.htm": false, "/healthcheck.html": false, "": false, "/": false,
	} {
		if got := isHealthPath([]byte(path)); got != want {
			t.Errorf("isHealthPath(%q) = %v, want %v", path, got, want)
		}
	}
}
