package leaderelection

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Sentinels, one per error code of the contract, for errors.Is:
//
//	lease, err := client.Acquire(ctx, "cron", "host-a", 10*time.Second)
//	var se *leaderelection.ServiceError
//	switch {
//	case errors.Is(err, leaderelection.ErrLeaseHeld):
//		errors.As(err, &se) // se.Lease names the holder
//	case errors.Is(err, leaderelection.ErrTransport):
//		// no answer: connection refused, reset, timed out
//	}
//
// Every error the service answers is a *ServiceError (code, status, message,
// and the current lease where the service sent one); a request that got no
// answer is a *TransportError. Sentinels rather than one type per code keep
// the switch above short and match the service's vocabulary word for word.
var (
	ErrLeaseHeld          = errors.New("lease_held")
	ErrLeaseLost          = errors.New("lease_lost")
	ErrNotFound           = errors.New("not_found")
	ErrInvalidRequest     = errors.New("invalid_request")
	ErrUnauthorized       = errors.New("unauthorized")
	ErrForbidden          = errors.New("forbidden")
	ErrBackendUnavailable = errors.New("backend_unavailable")
	ErrInternal           = errors.New("internal")
	ErrTransport          = errors.New("transport")
)

var errorsByCode = map[string]error{
	"lease_held":          ErrLeaseHeld,
	"lease_lost":          ErrLeaseLost,
	"not_found":           ErrNotFound,
	"invalid_request":     ErrInvalidRequest,
	"unauthorized":        ErrUnauthorized,
	"forbidden":           ErrForbidden,
	"backend_unavailable": ErrBackendUnavailable,
	"internal":            ErrInternal,
}

var codesByStatus = map[int]string{
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusRequestEntityTooLarge: "invalid_request",
	http.StatusUnprocessableEntity:   "invalid_request",
	http.StatusServiceUnavailable:    "backend_unavailable",
}

// ServiceError is an error answer of the service: {"error", "message", "lease"}.
type ServiceError struct {
	Code       string        // the contract's code: "lease_held", "lease_lost", ...
	Status     int           // the HTTP status (422 for a key refused before sending)
	Message    string        // what is wrong, in the service's words
	Lease      *Lease        // the current record, for lease_held and lease_lost
	RetryAfter time.Duration // backend_unavailable: wait at least this long
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
}

// Is matches the sentinel of the error's code.
func (e *ServiceError) Is(target error) bool {
	sentinel, ok := errorsByCode[e.Code]
	return ok && sentinel == target
}

// TransportError is a request that got no answer: connection refused or
// reset, DNS, protocol, or no answer within the timeout (Timeout true).
type TransportError struct {
	Method, Path string
	Timeout      bool
	Err          error
}

func (e *TransportError) Error() string {
	if e.Timeout {
		return fmt.Sprintf("transport: %s %s: no answer in time: %v", e.Method, e.Path, e.Err)
	}
	return fmt.Sprintf("transport: %s %s: %v", e.Method, e.Path, e.Err)
}

// Is matches ErrTransport.
func (e *TransportError) Is(target error) bool { return target == ErrTransport }

// Unwrap gives the cause (for errors.Is(err, context.DeadlineExceeded) and the like).
func (e *TransportError) Unwrap() error { return e.Err }

// IsPermanent reports an error no retry can fix: the same request gets the
// same answer until someone changes the caller's token, role, scope or
// arguments (invalid_request, unauthorized, forbidden). An elector that gets
// one ends its election.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrInvalidRequest) || errors.Is(err, ErrUnauthorized) ||
		errors.Is(err, ErrForbidden)
}

// errorFor maps an error answer (any status but 2xx) to a *ServiceError; an
// answer outside the contract is mapped by its status, else to internal.
func errorFor(status int, header http.Header, body []byte) *ServiceError {
	var doc struct {
		Error   *string         `json:"error"`
		Message *string         `json:"message"`
		Lease   json.RawMessage `json:"lease"`
	}
	parsed := json.Unmarshal(body, &doc) == nil
	code := ""
	if parsed && doc.Error != nil {
		if _, known := errorsByCode[*doc.Error]; known {
			code = *doc.Error
		}
	}
	if code == "" {
		code = codesByStatus[status]
	}
	if code == "" {
		code = "internal"
	}
	out := &ServiceError{Code: code, Status: status}
	if parsed && doc.Message != nil {
		out.Message = *doc.Message
	} else {
		text := string(body)
		if len(text) > 200 {
			text = text[:200]
		}
		out.Message = fmt.Sprintf("HTTP %d: %q", status, text)
	}
	if parsed && len(doc.Lease) > 0 && string(doc.Lease) != "null" {
		if lease, err := parseLease(doc.Lease); err == nil {
			out.Lease = lease
		}
	}
	if code == "backend_unavailable" {
		out.RetryAfter = retryAfter(header.Get("Retry-After"))
	}
	return out
}

// retryAfter reads Retry-After as seconds; 1 s when absent or unreadable (the
// service always sends a whole number of seconds, at least 1).
func retryAfter(value string) time.Duration {
	seconds, err := strconv.ParseFloat(value, 64)
	if err != nil || seconds < 0 || seconds != seconds {
		return time.Second
	}
	return time.Duration(seconds * float64(time.Second))
}
