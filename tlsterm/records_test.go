package tlsterm

import (
	"math/rand/v2"
	"testing"
)

// TestRecordCursor feeds a stream of records of random lengths (0 to the
// 16-bit maximum) to the cursor in pieces of random sizes, and checks the
// count of completed records after every piece and what rest says about
// each piece's first record.
func TestRecordCursor(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var stream []byte
		var ends []int // the offset just past each record
		for i := 0; i < 1+rng.IntN(12); i++ {
			n := rng.IntN(300)
			switch rng.IntN(8) {
			case 0:
				n = 0
			case 1:
				n = 1<<16 - 1
			}
			stream = append(stream, 23, 3, 3, byte(n>>8), byte(n))
			stream = append(stream, make([]byte, n)...)
			ends = append(ends, len(stream))
		}
		var cur recordCursor
		done, off := 0, 0
		for off < len(stream) {
			piece := stream[off:min(len(stream), off+1+rng.IntN(700))]
			// rest: up to the end of the record the piece starts in, if
			// the piece shows where that is.
			end := ends[done]
			want := min(end-off, len(piece))
			start := recordStart(ends, done)
			if start+recordHeaderLen > off+len(piece) {
				want = len(piece) // the header is not complete yet
			}
			if got := cur.rest(piece); got != want {
				t.Fatalf("round %d offset %d: rest = %d, want %d", round, off, got, want)
			}
			got := cur.advance(piece)
			off += len(piece)
			wantDone := 0
			for done+wantDone < len(ends) && ends[done+wantDone] <= off {
				wantDone++
			}
			if got != wantDone {
				t.Fatalf("round %d offset %d: %d records completed, want %d", round, off, got, wantDone)
			}
			done += got
		}
		if done != len(ends) || cur.nhdr != 0 || cur.left != 0 {
			t.Fatalf("round %d: ended with %d of %d records, cursor %+v", round, done, len(ends), cur)
		}
	}
}

func recordStart(ends []int, i int) int {
	if i == 0 {
		return 0
	}
	return ends[i-1]
}
