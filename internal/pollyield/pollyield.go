// Package pollyield lets a goroutine that has a long run of work ahead of
// it (a wake-up pass writing thousands of answers, a dispatcher handing out
// waiting connections) step aside until the runtime's network poller has
// had a turn.
//
// Go's scheduler looks for connections that became readable only when it
// has nothing else to run (or when its monitor finds the poller unvisited
// for 10 ms). On a node given one core, a pass that makes thousands of
// goroutines runnable keeps the run queue full for a long time, and a
// publish that arrives meanwhile waits in its socket, unseen, until the
// queue drains: the fan-out benchmark's publishes took 160-500 ms to be
// read while 10,000 subscribers were being answered. Yield makes the
// scheduler visit the poller: it arms a descriptor of its own (an eventfd)
// and waits for the poller to report it, so the connections that became
// readable before the call are queued ahead of the work the caller does
// next.
package pollyield

// Yield returns once the runtime's network poller has run since the call
// (on Linux; elsewhere it only lets other goroutines run): the goroutines
// whose connections were readable by then are queued to run, and run
// before what the caller makes runnable next. It costs a write, a read
// and a park (a few microseconds), so callers yield every so many units of
// work, not after each.
func Yield() { yield() }
