package leaderelection

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock moves only when told; timers fire when it passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	c       chan time.Time
	stopped bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { t.stopped = true; return true }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.fire()
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fire()
}

func (c *fakeClock) fire() {
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// scripted is a Backend whose answers the test decides.
type scripted struct {
	mu       sync.Mutex
	acquire  func() (*Lease, error)
	renew    func() (*Lease, error)
	calls    []string
	released []int64
}

func (b *scripted) record(call string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
}

func (b *scripted) count(call string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.calls {
		if c == call {
			n++
		}
	}
	return n
}

func (b *scripted) Key() string { return "job" }
func (b *scripted) Acquire(ctx context.Context, holder string, ttl time.Duration) (*Lease, error) {
	b.record("acquire")
	return b.acquire()
}
func (b *scripted) Renew(ctx context.Context, holder string, token int64, ttl time.Duration) (*Lease, error) {
	b.record("renew")
	return b.renew()
}
func (b *scripted) Release(ctx context.Context, holder string, token int64) (*Lease, error) {
	b.record("release")
	b.mu.Lock()
	b.released = append(b.released, token)
	b.mu.Unlock()
	return lease(token, 10), nil
}
func (b *scripted) Watch(ctx context.Context, lastEventID string) (EventStream, error) {
	return nil, nil
}

// eventually polls cond until it holds, failing after 5 s of real time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type record struct {
	mu     sync.Mutex
	events []string
	errs   []error
}

func (r *record) add(event string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event)
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

func (r *record) has(n int) func() bool {
	return func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.events) >= n }
}

func (r *record) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string{}, r.events...)
}

func manager(t *testing.T, b Backend, clock Clock) (*LeaderManager, *record) {
	lm, err := NewLeaderManager(b, &testConfig)
	if err != nil {
		t.Fatal(err)
	}
	lm.Clock, lm.Watch, lm.Identity = clock, false, "me"
	r := &record{}
	lm.OnElected = func(id string, _ context.CancelFunc) { r.add("elected", nil) }
	lm.OnOusting = func(id string, _ context.CancelFunc) { r.add("ousting", nil) }
	lm.OnError = func(id string, err error, _ context.CancelFunc) { r.add("error", err) }
	return lm, r
}

func TestManagerStepsDownAtTheDeadlineWhileARenewHangs(t *testing.T) {
	clock := &fakeClock{now: base}
	hang := make(chan struct{})
	b := &scripted{
		acquire: func() (*Lease, error) { return lease(3, 10), nil },
		renew: func() (*Lease, error) {
			<-hang
			return nil, errTransport
		},
	}
	lm, r := manager(t, b, clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- lm.Start(ctx) }()

	eventually(t, "elected", r.has(1))
	if !lm.IsLeader() || lm.FencingToken() != 3 {
		t.Fatalf("leader %v, token %d", lm.IsLeader(), lm.FencingToken())
	}
	clock.Advance(3 * time.Second) // the renew is due, and hangs
	eventually(t, "renew sent", func() bool { return b.count("renew") == 1 })
	clock.Advance(6*time.Second - time.Millisecond)
	if !lm.IsLeader() {
		t.Fatal("not leader 1 ms before the deadline")
	}
	clock.Advance(time.Millisecond) // the deadline: 0 + 10 s - 1 s
	if lm.IsLeader() || lm.Lease() != nil {
		t.Fatal("still leader at the deadline")
	}
	eventually(t, "ousting", r.has(2))
	if got := r.list(); got[1] != "ousting" {
		t.Fatalf("events %v", got)
	}
	b.acquire = func() (*Lease, error) { return nil, errHeld }
	close(hang) // the renew fails at last: reported, then the follower campaigns
	eventually(t, "error reported", r.has(3))
	eventually(t, "acquire again", func() bool { return b.count("acquire") == 2 })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start returned %v", err)
	}
	// The last lease granted to us is released, though its term is over.
	if len(b.released) != 1 || b.released[0] != 3 {
		t.Fatalf("released %v", b.released)
	}
	if got := r.list(); len(got) != 3 {
		t.Fatalf("events %v", got)
	}
}

func TestManagerEndsOnAPermanentError(t *testing.T) {
	clock := &fakeClock{now: base}
	b := &scripted{acquire: func() (*Lease, error) { return nil, errForbidden }}
	lm, r := manager(t, b, clock)
	err := lm.Start(context.Background())
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("Start returned %v", err)
	}
	if got := r.list(); len(got) != 1 || got[0] != "error" || !errors.Is(r.errs[0], ErrForbidden) {
		t.Fatalf("events %v", got)
	}
	if b.count("acquire") != 1 || b.count("release") != 0 {
		t.Fatalf("calls %v", b.calls)
	}
}

func TestManagerStopReleasesAndCancelWorksFromACallback(t *testing.T) {
	clock := &fakeClock{now: base}
	b := &scripted{acquire: func() (*Lease, error) { return lease(5, 10), nil }}
	lm, r := manager(t, b, clock)
	lm.OnElected = func(id string, cancel context.CancelFunc) {
		r.add("elected", nil)
		if lm.TermLease().FencingToken != 5 {
			t.Errorf("TermLease in OnElected: %+v", lm.TermLease())
		}
		cancel()
	}
	lm.OnOusting = func(id string, _ context.CancelFunc) {
		r.add("ousting", nil)
		if lm.TermLease().FencingToken != 5 || lm.IsLeader() {
			t.Errorf("in OnOusting: TermLease %+v, leader %v", lm.TermLease(), lm.IsLeader())
		}
	}
	if err := lm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.list(); len(got) != 2 || got[0] != "elected" || got[1] != "ousting" {
		t.Fatalf("events %v", got)
	}
	if len(b.released) != 1 || b.released[0] != 5 {
		t.Fatalf("released %v", b.released)
	}
	lm.Stop() // after Start returned: at once
	if err := lm.Start(context.Background()); err == nil {
		t.Fatal("a second Start ran")
	}
}

func TestManagerReportsAPanickingCallbackAndGoesOn(t *testing.T) {
	clock := &fakeClock{now: base}
	b := &scripted{acquire: func() (*Lease, error) { return lease(7, 10), nil }}
	lm, r := manager(t, b, clock)
	lm.OnElected = func(id string, cancel context.CancelFunc) {
		r.add("elected", nil)
		panic("the application's bug")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- lm.Start(ctx) }()
	eventually(t, "the panic reported", r.has(2))
	if got := r.list(); got[0] != "elected" || got[1] != "error" {
		t.Fatalf("events %v", got)
	}
	if !lm.IsLeader() { // the term goes on
		t.Fatal("the panic ended the term")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start returned %v", err)
	}
	if got := r.list(); len(got) != 3 || got[2] != "ousting" || len(b.released) != 1 {
		t.Fatalf("events %v, released %v", got, b.released)
	}
}

func TestManagerWaitForLeadership(t *testing.T) {
	clock := &fakeClock{now: base}
	var free atomic.Bool
	b := &scripted{acquire: func() (*Lease, error) {
		if free.Load() {
			return lease(9, 10), nil
		}
		return nil, errHeld
	}}
	lm, r := manager(t, b, clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- lm.Start(ctx) }()
	eventually(t, "first acquire", func() bool { return b.count("acquire") == 1 })

	waited := make(chan bool)
	go func() { waited <- lm.WaitForLeadership(context.Background()) }()
	free.Store(true)
	clock.Advance(time.Second) // the follower's next attempt is granted
	if !<-waited || lm.FencingToken() != 9 {
		t.Fatalf("WaitForLeadership returned while leader is %v", lm.IsLeader())
	}

	short, stop := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer stop()
	if !lm.WaitForLeadership(short) { // already leading: at once
		t.Fatal("false while leading")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if lm.WaitForLeadership(context.Background()) { // the election is over: at once
		t.Fatal("true after the election ended")
	}
	if got := r.list(); len(got) != 2 {
		t.Fatalf("events %v", got)
	}
}
