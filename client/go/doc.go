// Package leaderelection is the Go client and leader elector of the
// leaderelection service (standard library only).
//
//	backend, err := leaderelection.NewBackend("http://127.0.0.1:8080", "nightly-report")
//	lm, err := leaderelection.NewLeaderManager(backend, &leaderelection.Config{
//		Term: 8 * time.Second, Renew: 4 * time.Second, Retry: 2 * time.Second})
//	lm.OnElected = func(id string, cancel context.CancelFunc) { ... }
//	err = lm.Start(ctx) // until ctx ends; releases the lease on the way out
//
// Three layers, each usable alone:
//
//   - Client: the HTTP API, one method per call, typed errors (ErrLeaseHeld
//     and the other sentinels, *ServiceError, *TransportError), watch streams.
//   - Election: the elector's decisions as one I/O-free step function over a
//     state (Following, Leading, Stopping, Done) and inputs (Tick, Answered,
//     Free, Stop), returning actions. Tested with a table and injected times.
//   - LeaderManager: performs Election's actions on a Backend with a Clock:
//     calls in their own goroutines, callbacks in order, timers at the renew
//     time and the deadline.
//
// Choices where the contract is silent:
//
//   - Start blocks until the election ends, as http.Server.Serve does, and
//     returns the permanent error that ended it (nil after a stop). Run it in
//     a goroutine to do other work meanwhile.
//   - A zero Config field takes its default, Margin included: a margin of
//     nothing gives the application no time to stop, so it is never asked for
//     by accident.
//   - A stop waits for the call in flight (at most its timeout) rather than
//     cancelling it: an acquire granted meanwhile is then known and released,
//     instead of locking the key out for a whole ttl.
//   - A panic in OnElected or OnOusting is recovered and passed to OnError,
//     and the election goes on, as the elector table of docs/elector.md asks
//     of every SDK (a callback's exception is its result). Unwinding would
//     end the process while it may lead, without a release. A panic in
//     OnError itself is logged (package log).
package leaderelection
