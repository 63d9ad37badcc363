package caddymodule

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// A clawgate node that stops takes its connections with it: tsnet aborts
// them and queues resets it never sends, so a client whose WebSocket went
// through the node hears nothing and waits for its own timeout (the Control
// UI's is twice the gateway's tick interval). Caddy's reverse_proxy sends
// its "going away" close frame only when its module is cleaned up, after
// the servers and their listeners, and so the node, are already gone. So
// when Caddy exits (before the node's first listener closes) and whenever a
// node closes, clawgate first says goodbye on every WebSocket admitted
// through the node: a close frame (1001, going away) between two of the
// gateway's frames, then a short wait for the client's answer.

// Close code and reason sent to WebSocket clients when their node stops.
const (
	goingAwayCode   = 1001
	goingAwayReason = "clawgate is stopping"
)

// goodbyeWait bounds how long a stopping node waits for its WebSockets'
// clients to answer the close frame before it closes them regardless.
const goodbyeWait = 2 * time.Second

// wsFrames follows frame boundaries in one direction of a WebSocket stream
// (RFC 6455 §5.2), reading only the frame headers.
type wsFrames struct {
	hdr  [14]byte
	n    int    // header bytes of the current frame seen so far
	left uint64 // payload bytes of the current frame still to come
	body bool   // the header is complete; the payload is being read
}

// idle reports whether the stream is between two frames.
func (f *wsFrames) idle() bool { return f.n == 0 && !f.body }

// feed consumes p up to the end of the frame in progress, or all of p if
// that frame does not end within it, and returns how many bytes it consumed.
func (f *wsFrames) feed(p []byte) int {
	used := 0
	for used < len(p) {
		if f.body {
			k := uint64(len(p) - used)
			if k > f.left {
				k = f.left
			}
			used += int(k)
			f.left -= k
			if f.left == 0 {
				f.body = false
				return used
			}
			continue
		}
		var hdr []byte
		if f.n == 0 && len(p)-used >= len(f.hdr) {
			// A whole header is in p: read it there.
			hdr = p[used:]
			used += headerLen(hdr[1])
		} else {
			f.hdr[f.n] = p[used]
			f.n++
			used++
			if f.n < 2 || f.n < headerLen(f.hdr[1]) {
				continue
			}
			hdr, f.n = f.hdr[:], 0
		}
		f.left = payloadLen(hdr)
		if f.left == 0 {
			return used
		}
		f.body = true
	}
	return used
}

// headerLen is the length of a frame header whose second byte is b1.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4 // masking key
	}
	return n
}

// payloadLen is the payload length a complete frame header states.
func payloadLen(hdr []byte) uint64 {
	switch l := hdr[1] & 0x7f; l {
	case 126:
		return uint64(binary.BigEndian.Uint16(hdr[2:4]))
	case 127:
		return binary.BigEndian.Uint64(hdr[2:10])
	default:
		return uint64(l)
	}
}

// closeFrame is an unmasked (server to client) close frame with code and
// reason; reason must fit a control frame (at most 123 bytes).
func closeFrame(code uint16, reason string) []byte {
	b := make([]byte, 0, 4+len(reason))
	b = append(b, 0x88, byte(2+len(reason)))
	b = binary.BigEndian.AppendUint16(b, code)
	return append(b, reason...)
}

// wsWriter is the state trackedConn keeps of what it wrote to the client.
// Its lock is never held across a write that could wait on the client,
// except the close frame's, which has a deadline.
type wsWriter struct {
	mu      sync.Mutex
	frames  wsFrames
	writing bool // a write of the gateway's bytes is under way
	pending bool // a goodbye waits for the frame in progress to end
	saidBye bool // the close frame was written: nothing more is
	sent    bool // and the write succeeded
	claimed bool // a goodbye has begun (claim)

	doneOnce sync.Once
	done     chan struct{} // closed when the connection is closed
}

// claim reports whether the caller is the first to say goodbye on the
// connection; a stopping node's listeners may each try.
func (w *wsWriter) claim() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	first := !w.claimed
	w.claimed = true
	return first
}

func (w *wsWriter) doneCh() chan struct{} {
	w.doneOnce.Do(func() { w.done = make(chan struct{}) })
	return w.done
}

// Write passes the gateway's frames to the client and, when a goodbye is
// pending, sends the close frame as soon as the frame in progress has
// ended; the gateway's later bytes are refused, which ends the tunnel.
func (c *trackedConn) Write(p []byte) (int, error) {
	w := &c.ws
	written := 0
	for written < len(p) {
		w.mu.Lock()
		if w.saidBye {
			w.mu.Unlock()
			return written, net.ErrClosed
		}
		// All of p, or with a goodbye pending, up to the end of the frame
		// in progress.
		k := len(p) - written
		if w.pending {
			k = w.frames.feed(p[written:])
		} else {
			for rest := p[written:]; len(rest) > 0; {
				rest = rest[w.frames.feed(rest):]
			}
		}
		w.writing = true
		w.mu.Unlock()

		n, err := c.Conn.Write(p[written : written+k])
		written += n

		w.mu.Lock()
		w.writing = false
		if err == nil && w.pending && w.frames.idle() {
			w.sayByeLocked(c.Conn)
			err = net.ErrClosed
		}
		w.mu.Unlock()
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// sayByeLocked writes the close frame. w.mu is held.
func (w *wsWriter) sayByeLocked(conn net.Conn) {
	w.saidBye = true
	w.pending = false
	_ = conn.SetWriteDeadline(time.Now().Add(goodbyeWait))
	_, err := conn.Write(closeFrame(goingAwayCode, goingAwayReason))
	w.sent = err == nil
}

// goodbye sends the client a going-away close frame (at once if no frame
// of the gateway's is being written, else right after it), waits up to
// wait for the connection to end (the client answers the close, and the
// tunnel closes), and closes it. It reports whether the close frame went
// out.
func (c *trackedConn) goodbye(wait time.Duration) bool {
	w := &c.ws
	w.mu.Lock()
	if !w.saidBye {
		if w.frames.idle() && !w.writing {
			w.sayByeLocked(c.Conn)
		} else {
			w.pending = true
		}
	}
	w.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.doneCh():
	case <-t.C:
	}
	w.mu.Lock()
	said := w.sent
	w.saidBye = true // a frame still half written is cut; nothing more goes out
	w.mu.Unlock()
	_ = c.Close()
	return said
}

// sayGoodbye says goodbye on conns in parallel and returns once each has
// closed, within wait, and how many got their close frame.
func sayGoodbye(conns []*trackedConn, wait time.Duration) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	said := 0
	for _, c := range conns {
		wg.Go(func() {
			if c.goodbye(wait) {
				mu.Lock()
				said++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return said
}

// closeUpgrades says goodbye on the WebSockets admitted through the node
// that no other call is closing already, before the node closes.
func (p *poolNode) closeUpgrades() {
	p.upgradesMu.Lock()
	conns := make([]*trackedConn, 0, len(p.upgrades))
	for c := range p.upgrades {
		if c.ws.claim() {
			conns = append(conns, c)
		}
	}
	p.upgradesMu.Unlock()
	if len(conns) == 0 {
		return
	}
	begin := time.Now()
	said := sayGoodbye(conns, goodbyeWait)
	if p.logger != nil {
		p.logger.Info("node stopping: closed its WebSockets with a going-away close frame",
			zap.Int("count", len(conns)), zap.Int("close_frames", said), zap.Int("code", goingAwayCode),
			zap.Duration("took", time.Since(begin)))
	}
}
