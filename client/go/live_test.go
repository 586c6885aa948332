package leaderelection

// Tests against a live service: LEADERELECTION_TEST_SERVER=http://127.0.0.1:PORT
// (tests/test_go_sdk.py starts one and sets it). Every key starts with a
// random prefix, so a run never meets another run's leases.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

func liveServer(t *testing.T) string {
	t.Helper()
	url := os.Getenv("LEADERELECTION_TEST_SERVER")
	if url == "" {
		t.Skip("LEADERELECTION_TEST_SERVER is not set: start a service (./dev serve) and set it " +
			"to its URL to run the live tests; tests/test_go_sdk.py does both")
	}
	return url
}

func uniqueKey(t *testing.T, name string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "go-" + hex.EncodeToString(b[:]) + "-" + name
}

func liveClient(t *testing.T, url string) *Client {
	c, err := NewClient(url, WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLiveClientCalls(t *testing.T) {
	c := liveClient(t, liveServer(t))
	ctx := context.Background()
	key := uniqueKey(t, "calls")

	// A new key's first token is the backend's floor + 1 (1 until a key was
	// deleted, and TestLiveWatchSurvivesDelete deletes one): tokens below are
	// counted from it.
	first, err := c.Acquire(ctx, key, "host-a", 10*time.Second)
	if err != nil || first.FencingToken < 1 || first.Holder != "host-a" || !first.Held || first.TTL != 10 {
		t.Fatalf("acquire: %+v %v", first, err)
	}
	_, err = c.Acquire(ctx, key, "host-b", 10*time.Second)
	var se *ServiceError
	if !errors.Is(err, ErrLeaseHeld) || !errors.As(err, &se) || se.Status != 409 || se.Lease == nil || se.Lease.Holder != "host-a" {
		t.Fatalf("acquire by another: %v", err)
	}
	tok := first.FencingToken
	renewed, err := c.Renew(ctx, key, "host-a", tok, 0) // ttl 0: keep the lease's ttl
	if err != nil || renewed.FencingToken != tok || renewed.TTL != 10 || !renewed.RenewedAt.After(first.RenewedAt) {
		t.Fatalf("renew: %+v %v", renewed, err)
	}
	if _, err := c.Renew(ctx, key, "host-a", tok+1, 0); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew with a wrong token: %v", err)
	}
	if _, err := c.Acquire(ctx, key, "host-a", 10*time.Millisecond); !errors.Is(err, ErrInvalidRequest) || !IsPermanent(err) {
		t.Fatalf("ttl below ttl_min: %v", err)
	}
	got, err := c.Get(ctx, key)
	if err != nil || got.Holder != "host-a" || got.Remaining() <= 0 {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := c.Get(ctx, uniqueKey(t, "never")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a key never acquired: %v", err)
	}
	if _, err := c.Get(ctx, "a/b"); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("get of a bad key: %v", err)
	}
	released, err := c.Release(ctx, key, "host-a", tok)
	if err != nil || released.Held {
		t.Fatalf("release: %+v %v", released, err)
	}
	if _, err := c.Release(ctx, key, "host-a", tok); err != nil {
		t.Fatalf("a second release: %v", err)
	}
	if _, err := c.Renew(ctx, key, "host-a", tok, 0); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew after release: %v", err)
	}
	again, err := c.Acquire(ctx, key, "host-b", 10*time.Second)
	if err != nil || again.FencingToken != tok+1 || again.Transitions != 1 {
		t.Fatalf("acquire after release: %+v %v", again, err)
	}
}

func TestLiveListPages(t *testing.T) {
	c := liveClient(t, liveServer(t))
	ctx := context.Background()
	prefix := uniqueKey(t, "list.")
	keys := []string{prefix + "a", prefix + "b", prefix + "c"}
	for _, key := range keys {
		if _, err := c.Acquire(ctx, key, "h", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.ListPage(ctx, prefix, 2, "")
	if err != nil || len(page.Leases) != 2 || page.NextCursor == "" {
		t.Fatalf("first page: %+v %v", page, err)
	}
	last, err := c.ListPage(ctx, prefix, 2, page.NextCursor)
	if err != nil || len(last.Leases) != 1 || last.Leases[0].Key != keys[2] || last.NextCursor != "" {
		t.Fatalf("last page: %+v %v", last, err)
	}
	all, err := c.List(ctx, prefix)
	if err != nil || len(all) != 3 {
		t.Fatalf("list: %v %v", all, err)
	}
	for i, lease := range all {
		if lease.Key != keys[i] {
			t.Fatalf("list order: %v", all)
		}
	}
	if _, err := c.ListPage(ctx, prefix, 5000, ""); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("limit 5000: %v", err)
	}
}

func TestLiveWatch(t *testing.T) {
	c := liveClient(t, liveServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := uniqueKey(t, "watch")
	first, err := c.Acquire(ctx, key, "h", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := c.Watch(ctx, key, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replay, err := stream.Next()
	if err != nil || !replay.Replay || replay.Type != "acquired" || replay.Free() || replay.ID == "" {
		t.Fatalf("replay: %+v %v", replay, err)
	}
	if _, err := c.Release(ctx, key, "h", first.FencingToken); err != nil {
		t.Fatal(err)
	}
	released, err := stream.Next()
	if err != nil || released.Type != "released" || !released.Free() || released.Replay || released.Version <= replay.Version {
		t.Fatalf("released: %+v %v", released, err)
	}
	stream.Close()

	// Resuming after the last event seen sends nothing old; the next change comes.
	resumed, err := c.Watch(ctx, key, WatchOptions{LastEventID: released.ID})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if _, err := c.Acquire(ctx, key, "h2", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	next, err := resumed.Next()
	if err != nil || next.Type != "acquired" || next.Lease.Holder != "h2" || next.Lease.FencingToken != first.FencingToken+1 {
		t.Fatalf("after resume: %+v %v", next, err)
	}
	// Close from another goroutine ends a blocked Next.
	go func() { time.Sleep(50 * time.Millisecond); resumed.Close() }()
	if _, err := resumed.Next(); err == nil {
		t.Fatal("Next after Close returned an event")
	}
}

type liveElector struct {
	lm     *LeaderManager
	mu     sync.Mutex
	events []string
	tokens []int64
	last   *Lease // TermLease at the latest ousting
	ousted time.Time
	done   chan error
	cancel context.CancelFunc
}

func startElector(t *testing.T, url, key, id string, cfg Config) *liveElector {
	backend, err := NewBackend(url, key, WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	lm, err := NewLeaderManager(backend, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	lm.Identity = id
	e := &liveElector{lm: lm, done: make(chan error, 1)}
	lm.OnElected = func(string, context.CancelFunc) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.events = append(e.events, "elected")
		e.tokens = append(e.tokens, lm.TermLease().FencingToken)
	}
	lm.OnOusting = func(string, context.CancelFunc) {
		now := time.Now()
		e.mu.Lock()
		defer e.mu.Unlock()
		e.events = append(e.events, "ousting")
		e.last, e.ousted = lm.TermLease(), now
	}
	lm.OnError = func(_ string, err error, _ context.CancelFunc) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.events = append(e.events, "error: "+err.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- lm.Start(ctx) }()
	t.Cleanup(func() { cancel(); lm.Stop() })
	return e
}

func (e *liveElector) elections() []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int64{}, e.tokens...)
}

func liveEventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var fast = Config{Term: 3 * time.Second, Renew: 750 * time.Millisecond, Retry: 500 * time.Millisecond}

func TestLiveOneLeaderThenHandoverOnStop(t *testing.T) {
	url := liveServer(t)
	key := uniqueKey(t, "handover")
	a := startElector(t, url, key, "go-a", fast)
	b := startElector(t, url, key, "go-b", fast)
	liveEventually(t, "one elected", 20*time.Second, func() bool { return a.lm.IsLeader() || b.lm.IsLeader() })
	leader, follower := a, b
	if b.lm.IsLeader() {
		leader, follower = b, a
	}
	if follower.lm.IsLeader() || len(follower.elections()) != 0 {
		t.Fatal("both lead")
	}
	token := leader.lm.FencingToken()
	leader.lm.Stop()
	if err := <-leader.done; err != nil {
		t.Fatalf("leader's Start: %v", err)
	}
	if leader.lm.IsLeader() {
		t.Fatal("still leader after Stop")
	}
	liveEventually(t, "the follower elected", 20*time.Second, follower.lm.IsLeader)
	if got := follower.lm.FencingToken(); got <= token {
		t.Fatalf("token %d after %d", got, token)
	}
	record, err := liveClient(t, url).Get(context.Background(), key)
	if err != nil || record.Holder != follower.lm.Identity || !record.Held {
		t.Fatalf("service says %+v %v", record, err)
	}
}

func TestLivePermanentErrorEndsTheElection(t *testing.T) {
	url := liveServer(t)
	// A term beyond the service's ttl_max (3600 s by default): invalid_request.
	e := startElector(t, url, uniqueKey(t, "refused"), "go-r", Config{Term: 2 * time.Hour, Renew: time.Minute})
	select {
	case err := <-e.done:
		if !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("Start returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the election did not end")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.events) != 1 {
		t.Fatalf("events %v, want one error", e.events)
	}
}

// freezer forwards loopback TCP to the service until frozen; then it holds
// every connection open and forwards nothing: the service looks hung.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	thawed chan struct{} // closed while forwarding
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, thawed: make(chan struct{})}
	close(f.thawed)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *freezer) accept() {
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", f.target)
		if err != nil {
			in.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, in, out)
		f.mu.Unlock()
		go f.pipe(in, out)
		go f.pipe(out, in)
	}
}

func (f *freezer) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			f.mu.Lock()
			gate := f.thawed
			f.mu.Unlock()
			<-gate
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				to.Close()
			}
			return
		}
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.thawed = make(chan struct{})
}

func (f *freezer) close() {
	f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.thawed:
	default:
		close(f.thawed)
	}
	for _, c := range f.conns {
		c.Close()
	}
}

func TestLiveLeaderStepsDownBeforeExpiryWhenTheServiceHangs(t *testing.T) {
	url := liveServer(t)
	proxy := newFreezer(t, url[len("http://"):])
	key := uniqueKey(t, "frozen")
	e := startElector(t, "http://"+proxy.ln.Addr().String(), key, "go-f", fast)
	liveEventually(t, "elected", 20*time.Second, e.lm.IsLeader)
	proxy.freeze()
	liveEventually(t, "stepped down", 10*time.Second, func() bool { return !e.lm.IsLeader() })
	liveEventually(t, "ousting", 10*time.Second, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.last != nil
	})
	e.mu.Lock()
	last, ousted := e.last, e.ousted
	e.mu.Unlock()
	// One host, one wall clock: the elector stopped leading before the
	// service's expiry of the last grant it had (its margin is 0.3 s).
	if !ousted.Before(last.ExpiresAt) {
		t.Fatalf("ousted at %v, after the service's expiry %v", ousted, last.ExpiresAt)
	}
	record, err := liveClient(t, url).Get(context.Background(), key)
	if err != nil || record.FencingToken != last.FencingToken {
		t.Fatalf("service says %+v %v", record, err)
	}
}
