package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

const recordJSON = `{"key": "job", "holder": "host-b", "fencing_token": 4, "ttl": 10.0,
 "acquired_at": "2026-11-27T09:20:16.123456Z", "renewed_at": "2026-11-27T09:20:16.123456Z",
 "expires_at": "2026-11-27T09:20:26.123456Z", "transitions": 1, "held": true,
 "server_time": "2026-11-27T09:20:17.123456Z"}`

func TestErrorForEachCode(t *testing.T) {
	sentinels := []error{ErrLeaseHeld, ErrLeaseLost, ErrNotFound, ErrInvalidRequest,
		ErrUnauthorized, ErrForbidden, ErrBackendUnavailable, ErrInternal, ErrTransport}
	cases := []struct {
		status int
		body   string
		header http.Header
		want   error
		retry  time.Duration
	}{
		{409, `{"error": "lease_held", "message": "held by host-b", "lease": ` + recordJSON + `}`, nil, ErrLeaseHeld, 0},
		{409, `{"error": "lease_lost", "message": "lost", "lease": ` + recordJSON + `}`, nil, ErrLeaseLost, 0},
		{404, `{"error": "not_found", "message": "no such key", "lease": null}`, nil, ErrNotFound, 0},
		{422, `{"error": "invalid_request", "message": "ttl", "lease": null}`, nil, ErrInvalidRequest, 0},
		{413, `{"error": "invalid_request", "message": "too large", "lease": null}`, nil, ErrInvalidRequest, 0},
		{401, `{"error": "unauthorized", "message": "no token", "lease": null}`, nil, ErrUnauthorized, 0},
		{403, `{"error": "forbidden", "message": "read only", "lease": null}`, nil, ErrForbidden, 0},
		{503, `{"error": "backend_unavailable", "message": "down", "lease": null}`, http.Header{"Retry-After": {"5"}}, ErrBackendUnavailable, 5 * time.Second},
		{503, `{"error": "backend_unavailable", "message": "down", "lease": null}`, http.Header{}, ErrBackendUnavailable, time.Second},
		{500, `{"error": "internal", "message": "see the log", "lease": null}`, nil, ErrInternal, 0},
		// answers outside the contract: by status, else internal
		{503, `<html>bad gateway</html>`, http.Header{"Retry-After": {"2"}}, ErrBackendUnavailable, 2 * time.Second},
		{404, ``, nil, ErrNotFound, 0},
		{502, `<html>bad gateway</html>`, nil, ErrInternal, 0},
		{409, `{"error": "no_such_code", "message": "?"}`, nil, ErrInternal, 0},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%d %.30s", c.status, c.body)
		header := c.header
		if header == nil {
			header = http.Header{}
		}
		err := error(errorFor(c.status, header, []byte(c.body)))
		for _, s := range sentinels {
			if errors.Is(err, s) != (s == c.want) {
				t.Errorf("%s: errors.Is(%v) = %v", name, s, errors.Is(err, s))
			}
		}
		var se *ServiceError
		if !errors.As(err, &se) || se.Status != c.status || se.RetryAfter != c.retry {
			t.Errorf("%s: %#v", name, se)
		}
	}
}

func TestErrorCarriesTheCurrentLease(t *testing.T) {
	err := errorFor(409, http.Header{}, []byte(`{"error": "lease_held", "message": "m", "lease": `+recordJSON+`}`))
	if err.Lease == nil || err.Lease.Holder != "host-b" || err.Lease.FencingToken != 4 || err.Message != "m" {
		t.Fatalf("%#v", err)
	}
	want := time.Date(2026, 11, 27, 9, 20, 26, 123456000, time.UTC)
	if !err.Lease.ExpiresAt.Equal(want) || err.Lease.Remaining() != 9*time.Second {
		t.Fatalf("expires %v, remaining %v", err.Lease.ExpiresAt, err.Lease.Remaining())
	}
}

func TestTransportErrorUnwraps(t *testing.T) {
	err := error(&TransportError{Method: "POST", Path: "/v1/leases/job/acquire", Timeout: true, Err: context.DeadlineExceeded})
	if !errors.Is(err, ErrTransport) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrInternal) {
		t.Fatal(err)
	}
	if IsPermanent(err) || !IsPermanent(errorFor(403, http.Header{}, nil)) {
		t.Fatal("IsPermanent")
	}
}

func TestParseLeaseRefusesAnIncompleteRecord(t *testing.T) {
	for _, body := range []string{`{}`, `[]`, `{"key": "job", "holder": "h"}`,
		`{"key": "job", "holder": "h", "fencing_token": null, "ttl": 1, "acquired_at": "x"}`} {
		if _, err := parseLease([]byte(body)); err == nil {
			t.Errorf("%s accepted", body)
		}
	}
	lease, err := parseLease([]byte(recordJSON))
	if err != nil || lease.TTLDuration() != 10*time.Second || !lease.Held || lease.Transitions != 1 {
		t.Fatalf("%+v %v", lease, err)
	}
}
