package tlsterm

import "testing"

func TestStatsUnknownReasonCountsAsOther(t *testing.T) {
	var s Stats
	s.fail("no such reason")
	s.fail(FailEOF)
	if s.Failures(FailOther) != 1 || s.Failures(FailEOF) != 1 || s.Failures(FailInputOverflow) != 0 {
		t.Errorf("other=%d eof=%d input_overflow=%d", s.Failures(FailOther), s.Failures(FailEOF), s.Failures(FailInputOverflow))
	}
	snap := s.Snapshot()
	for _, r := range failureReasons {
		if _, ok := snap["failure."+r]; !ok {
			t.Errorf("Snapshot lacks failure.%s", r)
		}
	}
}
