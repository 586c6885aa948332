package leaderelection

import (
	"fmt"
	"time"
)

// Defaults of Config, the same as the Python client's.
const (
	DefaultTerm  = 15 * time.Second
	DefaultRenew = 5 * time.Second
	DefaultRetry = 2 * time.Second
	// MinTimeout is the shortest HTTP timeout per attempt that can work at all.
	MinTimeout = 50 * time.Millisecond
	// MaxDerivedTimeout caps the timeout derived from the other fields.
	MaxDerivedTimeout = 10 * time.Second
)

// Config is the election's timing. A zero field takes its default.
//
//		&leaderelection.Config{}                                     // term 15 s, renew every 5 s, retry every 2 s
//		&leaderelection.Config{Term: 8 * time.Second, Renew: 4 * time.Second, Retry: 2 * time.Second}
//
//	  - Term: the ttl each acquire and renew asks for. Default 15 s.
//	  - Renew: how long after a successful acquire or renew was sent the leader
//	    sends the next renew. Default 5 s.
//	  - Retry: how long a follower waits between acquire attempts (jitter only
//	    shortens it), and the most a failed renew waits before the next attempt.
//	    Default 2 s.
//	  - Margin: the leader's deadline is the monotonic time the last successful
//	    acquire or renew was sent + min(Term, granted ttl) - Margin. Default
//	    Term / 10. (Zero means the default: a margin of nothing leaves the
//	    application no time to stop, so it cannot be asked for.)
//	  - Timeout: the HTTP timeout of one attempt. Default
//	    min((Term - Margin - Renew) / 3, 10 s), so two renew attempts fit
//	    between the first renew and the deadline.
//
// NewLeaderManager refuses a Config that cannot work, with an error naming the
// broken rule; it never clamps: 0 < Retry; 0 < Renew < Term; 0 <= Margin <
// Term; Timeout >= 50 ms; Renew + 2 * Timeout <= Term - Margin.
type Config struct {
	Term    time.Duration
	Renew   time.Duration
	Retry   time.Duration
	Margin  time.Duration
	Timeout time.Duration
}

// Effective is the Config with its defaults filled in and checked: what the
// elector runs with, or the error naming the broken rule.
func (c Config) Effective() (Config, error) {
	out := c
	if out.Term == 0 {
		out.Term = DefaultTerm
	}
	if out.Renew == 0 {
		out.Renew = DefaultRenew
	}
	if out.Retry == 0 {
		out.Retry = DefaultRetry
	}
	if out.Margin == 0 {
		out.Margin = out.Term / 10
	}
	t, r, y, m := out.Term, out.Renew, out.Retry, out.Margin
	if !(y > 0) {
		return c, fmt.Errorf("leaderelection: rule 0 < retry broken: retry=%v", y)
	}
	if !(0 < r && r < t) {
		return c, fmt.Errorf("leaderelection: rule 0 < renew < term broken: renew=%v, term=%v", r, t)
	}
	if !(0 <= m && m < t) {
		return c, fmt.Errorf("leaderelection: rule 0 <= margin < term broken: margin=%v, term=%v", m, t)
	}
	window := t - m - r
	if out.Timeout == 0 {
		o := window / 3
		if o > MaxDerivedTimeout {
			o = MaxDerivedTimeout
		}
		if o < MinTimeout {
			return c, fmt.Errorf("leaderelection: rule renew + 2 * timeout <= term - margin "+
				"(two renew attempts fit before the deadline) leaves no room: term - margin - renew = "+
				"%v - %v - %v = %v, and the derived timeout (that / 3) must be at least %v; "+
				"shorten renew or margin, or lengthen term", t, m, r, window, MinTimeout)
		}
		out.Timeout = o
	} else {
		o := out.Timeout
		if o < MinTimeout {
			return c, fmt.Errorf("leaderelection: rule timeout >= %v broken: timeout=%v", MinTimeout, o)
		}
		if r+2*o > t-m {
			return c, fmt.Errorf("leaderelection: rule renew + 2 * timeout <= term - margin "+
				"(two renew attempts fit before the deadline) broken: %v + 2 * %v = %v > %v - %v = %v",
				r, o, r+2*o, t, m, t-m)
		}
	}
	return out, nil
}
