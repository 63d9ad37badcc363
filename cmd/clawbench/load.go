package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// target is one path through which the workload is sent.
type target struct {
	base      string      // http://host:port
	header    http.Header // sent with every request and WebSocket handshake
	transport *http.Transport
}

func (t *target) client() *http.Client {
	return &http.Client{Transport: t.transport, Timeout: 30 * time.Second}
}

func (t *target) wsURL() string { return "ws" + strings.TrimPrefix(t.base, "http") + "/ws" }

// sample is what one measurement window produced.
type sample struct {
	ops     int
	errs    int
	firstEr error
	elapsed time.Duration
	cpu     time.Duration   // CPU time of the whole process during the window
	lat     []time.Duration // one per successful operation
}

func (s *sample) add(o sample) {
	s.ops += o.ops
	s.errs += o.errs
	if s.firstEr == nil {
		s.firstEr = o.firstEr
	}
	s.elapsed += o.elapsed
	s.cpu += o.cpu
	s.lat = append(s.lat, o.lat...)
}

// rate is operations per second over the whole window.
func (s sample) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ops) / s.elapsed.Seconds()
}

// runHTTP sends GET /bench from conc workers, each one request at a time on
// its own keep-alive connection, for d. Every request's latency is kept:
// at these rates that is a few hundred kilobytes.
func runHTTP(ctx context.Context, t *target, conc int, d time.Duration) sample {
	var (
		mu  sync.Mutex
		out sample
		wg  sync.WaitGroup
	)
	c := t.client()
	cpu0 := cpuTime()
	start := time.Now()
	deadline := start.Add(d)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s sample
			s.lat = make([]time.Duration, 0, 4096)
			req, err := http.NewRequestWithContext(ctx, "GET", t.base+"/bench", nil)
			if err != nil {
				panic(err)
			}
			req.Header = t.header.Clone()
			for {
				t0 := time.Now()
				if !t0.Before(deadline) || ctx.Err() != nil {
					break
				}
				err := get(c, req)
				if err != nil {
					s.errs++
					if s.firstEr == nil {
						s.firstEr = err
					}
					continue
				}
				s.ops++
				s.lat = append(s.lat, time.Since(t0))
			}
			mu.Lock()
			out.add(s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	out.cpu = cpuTime() - cpu0
	return out
}

// cpuTime is the user and system CPU time this process has used. On a
// shared machine it is a steadier measure of a request's cost than
// throughput, which also depends on how much CPU other processes leave.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// get does one request and reads the whole answer, which must be a 200.
func get(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// dialWS opens a WebSocket to the backend's echo endpoint through t and
// checks one echo.
func dialWS(ctx context.Context, t *target, msg []byte) (*websocket.Conn, error) {
	c, resp, err := websocket.Dial(ctx, t.wsURL(), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: t.transport},
		HTTPHeader: t.header,
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket handshake: status %d: %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if _, err := echo(ctx, c, msg); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

// echo sends msg and waits for it to come back unchanged.
func echo(ctx context.Context, c *websocket.Conn, msg []byte) (time.Duration, error) {
	t0 := time.Now()
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		return 0, fmt.Errorf("websocket write: %w", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return 0, fmt.Errorf("websocket read: %w", err)
	}
	rtt := time.Since(t0)
	if !bytes.Equal(got, msg) {
		return 0, errors.New("websocket echo differs from the message sent")
	}
	return rtt, nil
}

// runWS opens conns WebSockets (not timed), then has each send a message
// and wait for its echo, one at a time, for d. With one connection the
// latencies are the unloaded round trip; with many, ops/elapsed is the
// message throughput.
func runWS(ctx context.Context, t *target, conns int, d time.Duration, msgSize int) sample {
	msg := bytes.Repeat([]byte("m"), msgSize)
	cs := make([]*websocket.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.CloseNow()
		}
	}()
	for range conns {
		c, err := dialWS(ctx, t, msg)
		if err != nil {
			return sample{errs: 1, firstEr: err}
		}
		cs = append(cs, c)
	}
	var (
		mu  sync.Mutex
		out sample
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s sample
			s.lat = make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				rtt, err := echo(ctx, c, msg)
				if err != nil {
					s.errs++
					s.firstEr = err
					break // the connection is no longer usable
				}
				s.ops++
				s.lat = append(s.lat, rtt)
			}
			mu.Lock()
			out.add(s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	return out
}

// memSnapshot is the process's memory at one instant, after a full GC.
type memSnapshot struct {
	heapStack  uint64 // live heap plus goroutine stacks
	rss        uint64 // resident set size, from /proc/self/statm (0 if unknown)
	goroutines int
}

// idleSample is the cost of holding idle WebSockets open.
type idleSample struct {
	conns                  int
	bytesPerConn           float64 // live heap + stacks
	rssPerConn             float64
	goroutinesPerConn      float64
	err                    error
	before, after, settled memSnapshot
}

// measureIdle opens n WebSockets through t, each proven to work with one
// echo, and reports the growth in live heap plus goroutine stacks (after two
// GCs, so sync.Pool contents are gone and only what the open connections
// hold remains) and in RSS, divided by n. Client, Caddy and backend live in
// this process, so the figure is the whole path's cost per connection; the
// difference between two paths is what the extra hop costs.
func measureIdle(ctx context.Context, t *target, n, msgSize int, settle func()) idleSample {
	msg := bytes.Repeat([]byte("m"), msgSize)
	out := idleSample{conns: n}
	settle()
	out.before = snapshot()

	cs := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	const dialers = 8 // open in parallel, but not all at once
	for w := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += dialers {
				c, err := dialWS(ctx, t, msg)
				if err != nil {
					errs <- err
					return
				}
				cs[i] = c
			}
		}()
	}
	wg.Wait()
	close(errs)
	out.err = <-errs
	if out.err == nil {
		time.Sleep(100 * time.Millisecond) // let the handshakes' garbage become garbage
		out.after = snapshot()
		out.bytesPerConn = (float64(out.after.heapStack) - float64(out.before.heapStack)) / float64(n)
		out.rssPerConn = (float64(out.after.rss) - float64(out.before.rss)) / float64(n)
		out.goroutinesPerConn = float64(out.after.goroutines-out.before.goroutines) / float64(n)
	}
	for _, c := range cs {
		if c != nil {
			c.CloseNow()
		}
	}
	// Wait for every side of the closed connections to wind down, so the
	// next scenario starts from the same baseline.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > out.before.goroutines+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out.settled = snapshot()
	return out
}

// snapshot collects garbage twice (the second empties sync.Pool's victim
// cache) and returns freed memory to the OS, so RSS follows what is live
// rather than what the runtime happens to keep around.
func snapshot() memSnapshot {
	runtime.GC()
	debug.FreeOSMemory() // a GC of its own, then the scavenger
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnapshot{heapStack: ms.HeapAlloc + ms.StackInuse, rss: rss(), goroutines: runtime.NumGoroutine()}
}

// rss reads the resident set size in bytes from /proc/self/statm.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
