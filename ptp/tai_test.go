package ptp

import (
	"testing"
	"time"
)

func TestTAIOffsetConversions(t *testing.T) {
	utc := time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC)
	tai := DefaultTAIOffset.FromTime(utc)
	if want := utc.UnixNano() + 37e9; tai != want {
		t.Fatalf("FromTime = %d, want %d", tai, want)
	}
	if got := DefaultTAIOffset.ToTime(tai); !got.Equal(utc) {
		t.Errorf("ToTime(FromTime(t)) = %v, want %v", got, utc)
	}
	o := TAIOffset(36 * time.Second)
	if got := o.FromTime(time.Unix(0, 0)); got != 36e9 {
		t.Errorf("36 s offset FromTime(Unix epoch) = %d", got)
	}
	if got := o.ToTime(36e9); !got.Equal(time.Unix(0, 0)) {
		t.Errorf("36 s offset ToTime(36e9) = %v, want the Unix epoch", got)
	}
}
