package leaderelection

import (
	"encoding/json"
	"fmt"
	"time"
)

// Lease is one key's lease record, as the service answered it.
//
//	lease, err := client.Acquire(ctx, "cron", "host-a", 10*time.Second)
//	lease.FencingToken // 7: pass it along with every write made as leader
//
// Times are the service's clock (ServerTime says when it answered). The
// elector never uses them to decide whether it leads, only its own monotonic
// clock: a wall clock of another host cannot be trusted for that.
type Lease struct {
	Key          string    `json:"key"`
	Holder       string    `json:"holder"`
	FencingToken int64     `json:"fencing_token"` // strictly increases with every new term of the key
	TTL          float64   `json:"ttl"`           // seconds the current grant lasts
	AcquiredAt   time.Time `json:"acquired_at"`
	RenewedAt    time.Time `json:"renewed_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	Transitions  int64     `json:"transitions"` // how many times the holder changed
	Held         bool      `json:"held"`        // false once expired or released
	ServerTime   time.Time `json:"server_time"` // the deciding clock when the service answered
	// Successor is who an admin or the holder named to take the lease next;
	// "" when none is named (the record has the field only while one is).
	Successor string `json:"successor,omitempty"`
}

// TTLDuration is TTL as a time.Duration.
func (l *Lease) TTLDuration() time.Duration {
	return time.Duration(l.TTL * float64(time.Second))
}

// Remaining is the time until expiry by the service's clock at its answer (0 if lapsed).
func (l *Lease) Remaining() time.Duration {
	if d := l.ExpiresAt.Sub(l.ServerTime); d > 0 {
		return d
	}
	return 0
}

// parseLease decodes the contract's record, refusing one with a field missing:
// a zero token or time would be read as a real value.
func parseLease(data []byte) (*Lease, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("not a lease record: %w", err)
	}
	for _, name := range []string{
		"key", "holder", "fencing_token", "ttl", "acquired_at", "renewed_at",
		"expires_at", "transitions", "held", "server_time",
	} {
		if raw, ok := fields[name]; !ok || string(raw) == "null" {
			return nil, fmt.Errorf("not a lease record: no %q", name)
		}
	}
	var lease Lease
	if err := json.Unmarshal(data, &lease); err != nil {
		return nil, fmt.Errorf("not a lease record: %w", err)
	}
	return &lease, nil
}
