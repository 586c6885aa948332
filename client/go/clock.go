package leaderelection

import "time"

// Clock is the elector's time: a monotonic Now and timers. Tests inject a
// fake one and move it by hand; the default is the process's clock, whose
// time.Time readings carry Go's monotonic reading, so a wall-clock step never
// moves a deadline.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer of a Clock.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// SystemClock is the process's monotonic clock.
type SystemClock struct{}

// Now is time.Now (with its monotonic reading).
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer is time.NewTimer.
func (SystemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }
func (t systemTimer) Stop() bool          { return t.t.Stop() }
