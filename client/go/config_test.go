package leaderelection

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	got, err := Config{}.Effective()
	if err != nil {
		t.Fatal(err)
	}
	// timeout: min((15 - 1.5 - 5) / 3, 10) = 2.8333 s
	want := Config{Term: 15 * time.Second, Renew: 5 * time.Second, Retry: 2 * time.Second,
		Margin: 1500 * time.Millisecond, Timeout: 8500 * time.Millisecond / 3}
	if got != want {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
}

func TestConfigDerivedTimeoutIsCapped(t *testing.T) {
	got, err := Config{Term: time.Hour, Renew: time.Minute}.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if got.Timeout != MaxDerivedTimeout {
		t.Fatalf("timeout %v, want %v", got.Timeout, MaxDerivedTimeout)
	}
}

func TestConfigRules(t *testing.T) {
	s, ms := time.Second, time.Millisecond
	cases := []struct {
		cfg  Config
		rule string // "" when valid
	}{
		{Config{Term: 8 * s, Renew: 4 * s, Retry: 2 * s}, ""},
		{Config{Term: 3 * s, Renew: 750 * ms, Retry: 500 * ms}, ""},
		{Config{Retry: -s}, "rule 0 < retry broken"},
		{Config{Term: 3 * s}, "rule 0 < renew < term broken"}, // default renew 5 s
		{Config{Renew: 15 * s}, "rule 0 < renew < term broken"},
		{Config{Renew: -s}, "rule 0 < renew < term broken"},
		{Config{Margin: -s}, "rule 0 <= margin < term broken"},
		{Config{Margin: 15 * s}, "rule 0 <= margin < term broken"},
		{Config{Timeout: 10 * ms}, "rule timeout >= 50ms broken"},
		{Config{Timeout: 5 * s}, "rule renew + 2 * timeout <= term - margin (two renew attempts fit before the deadline) broken"},
		{Config{Term: s, Renew: 850 * ms, Margin: 100 * ms}, "leaves no room"},
		{Config{Term: 10 * s, Renew: 3 * s, Margin: s, Timeout: 3 * s}, ""}, // 3 + 6 = 9 <= 9
	}
	for _, c := range cases {
		_, err := c.cfg.Effective()
		if c.rule == "" && err != nil {
			t.Errorf("%+v: refused: %v", c.cfg, err)
		}
		if c.rule != "" && (err == nil || !strings.Contains(err.Error(), c.rule)) {
			t.Errorf("%+v: error %v, want one naming %q", c.cfg, err, c.rule)
		}
		if _, merr := NewLeaderManager(&ServiceBackend{key: "k"}, &c.cfg); (merr == nil) != (c.rule == "") {
			t.Errorf("%+v: NewLeaderManager error %v", c.cfg, merr)
		}
	}
}

func TestNewLeaderManagerDefaults(t *testing.T) {
	backend, err := NewBackend("http://127.0.0.1:1", "job")
	if err != nil {
		t.Fatal(err)
	}
	lm, err := NewLeaderManager(backend, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lm.Config().Term != DefaultTerm || !lm.Watch || lm.IsLeader() || lm.Lease() != nil || lm.FencingToken() != 0 {
		t.Fatalf("a new manager: %+v", lm)
	}
	// hostname-pid-random
	parts := strings.Split(lm.Identity, "-")
	if len(parts) < 3 || len(parts[len(parts)-1]) != 8 || lm.Identity == DefaultIdentity() {
		t.Fatalf("identity %q", lm.Identity)
	}
}

func TestNewBackendChecksItsArguments(t *testing.T) {
	for _, c := range []struct{ url, key string }{
		{"http://127.0.0.1:8080", "../x"},
		{"http://127.0.0.1:8080", ""},
		{"http://127.0.0.1:8080", "_x"},
		{"ftp://127.0.0.1", "job"},
		{"127.0.0.1:8080", "job"},
	} {
		if _, err := NewBackend(c.url, c.key); err == nil {
			t.Errorf("NewBackend(%q, %q) accepted", c.url, c.key)
		}
	}
}
