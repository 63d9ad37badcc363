package caddymodule

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// wsFrame encodes one frame with the given opcode and payload, masked or
// not, choosing the length encoding the payload needs.
func wsFrame(opcode byte, payload []byte, masked bool) []byte {
	b := []byte{0x80 | opcode}
	var mask byte
	if masked {
		mask = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mask|byte(n))
	case n <= 0xffff:
		b = append(b, mask|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, mask|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if masked {
		b = append(b, 1, 2, 3, 4) // the masking key; the payload is left as is
	}
	return append(b, payload...)
}

func TestWSFramesBoundaries(t *testing.T) {
	frames := [][]byte{
		wsFrame(0x1, []byte("hello"), false),
		wsFrame(0x1, nil, false),
		wsFrame(0x2, bytes.Repeat([]byte{7}, 300), false),     // 16-bit length
		wsFrame(0x2, bytes.Repeat([]byte{8}, 70000), false),   // 64-bit length
		wsFrame(0x1, []byte("masked"), true),                  // a client's frame
		wsFrame(0x9, []byte("ping"), false),                   // control frame
		wsFrame(0x2, bytes.Repeat([]byte{9}, 126), true),      // 16-bit length, masked
		wsFrame(0x0, bytes.Repeat([]byte{1}, 125), false),     // largest 7-bit length
		wsFrame(0x0, bytes.Repeat([]byte{2}, 0x10000), false), // smallest 64-bit length
	}
	var stream []byte
	var ends []int // offsets just past each frame
	for _, f := range frames {
		stream = append(stream, f...)
		ends = append(ends, len(stream))
	}
	// Fed in chunks of several sizes and as a whole, the idle
	// points are exactly the frame ends.
	for _, chunk := range []int{1, 2, 3, 5, 7, 13, 17, len(stream)} {
		var f wsFrames
		var got []int
		off := 0
		for off < len(stream) {
			end := min(off+chunk, len(stream))
			for off < end {
				off += f.feed(stream[off:end])
				if f.idle() {
					got = append(got, off)
				}
			}
		}
		// Feeding stops at every frame end, so each end is seen once.
		if !equalInts(got, ends) {
			t.Errorf("chunk %d: idle at %v, want %v", chunk, got, ends)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCloseFrame(t *testing.T) {
	got := closeFrame(goingAwayCode, goingAwayReason)
	want := append([]byte{0x88, byte(2 + len(goingAwayReason)), 0x03, 0xe9}, goingAwayReason...)
	if !bytes.Equal(got, want) {
		t.Errorf("closeFrame = % x, want % x", got, want)
	}
	if len(goingAwayReason) > 123 {
		t.Errorf("the reason is %d bytes; a close frame holds at most 123", len(goingAwayReason))
	}
}

// pipeConn returns a trackedConn writing to one end of a pipe, and a
// reader of everything the other end receives.
func pipeConn(t *testing.T) (*trackedConn, <-chan []byte) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	return &trackedConn{Conn: server, gateway: "ws-close-test"}, got
}

func TestGoodbyeWhenIdle(t *testing.T) {
	tc, got := pipeConn(t)
	first := wsFrame(0x1, []byte("hello"), false)
	if _, err := tc.Write(first); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if !tc.goodbye(200 * time.Millisecond) {
		t.Error("goodbye on an idle connection reports no close frame sent")
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("goodbye took %v", d)
	}
	want := append(first, closeFrame(goingAwayCode, goingAwayReason)...)
	if b := <-got; !bytes.Equal(b, want) {
		t.Errorf("the client received % x, want % x", b, want)
	}
	if _, err := tc.Write(wsFrame(0x1, []byte("late"), false)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a write after the goodbye = %v, want net.ErrClosed", err)
	}
}

// A goodbye that comes while a frame of the gateway's is half written
// waits for its end: the client gets the whole frame, then the close frame,
// and nothing of the frames after it.
func TestGoodbyeWaitsForTheFrameInProgress(t *testing.T) {
	tc, got := pipeConn(t)
	big := wsFrame(0x2, bytes.Repeat([]byte{5}, 1000), false)
	next := wsFrame(0x1, []byte("after"), false)
	if _, err := tc.Write(big[:300]); err != nil {
		t.Fatal(err)
	}
	said := make(chan bool, 1)
	go func() { said <- tc.goodbye(3 * time.Second) }()
	// The frame in progress is half written, so the goodbye waits; then the
	// rest of it and the next frame come in one write, as a proxy's copy
	// loop sends them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tc.ws.mu.Lock()
		pending := tc.ws.pending
		tc.ws.mu.Unlock()
		if pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the goodbye never became pending")
		}
		time.Sleep(time.Millisecond)
	}
	n, err := tc.Write(append(big[300:], next...))
	if !errors.Is(err, net.ErrClosed) || n != len(big)-300 {
		t.Errorf("the write across the frame end = %d, %v; want %d, net.ErrClosed", n, err, len(big)-300)
	}
	if !<-said {
		t.Error("goodbye reports no close frame sent")
	}
	want := append(append([]byte(nil), big...), closeFrame(goingAwayCode, goingAwayReason)...)
	if b := <-got; !bytes.Equal(b, want) {
		t.Errorf("the client received %d bytes ending % x, want %d ending % x", len(b), tail(b), len(want), tail(want))
	}
}

// A frame that never ends is cut when the wait is over: no close frame
// goes out in the middle of it, and the connection is closed.
func TestGoodbyeGivesUpOnAFrameThatNeverEnds(t *testing.T) {
	tc, got := pipeConn(t)
	big := wsFrame(0x2, bytes.Repeat([]byte{5}, 1000), false)
	if _, err := tc.Write(big[:300]); err != nil {
		t.Fatal(err)
	}
	if tc.goodbye(100 * time.Millisecond) {
		t.Error("goodbye reports a close frame sent in the middle of a frame")
	}
	if b := <-got; !bytes.Equal(b, big[:300]) {
		t.Errorf("the client received %d bytes, want the 300 written before the goodbye", len(b))
	}
	if _, err := tc.Write(big[300:]); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a write after the goodbye = %v, want net.ErrClosed", err)
	}
}

func tail(b []byte) []byte {
	if len(b) > 8 {
		return b[len(b)-8:]
	}
	return b
}

// loopbackConn returns the writing end of a TCP connection on loopback
// whose other end is drained.
func loopbackConn(b *testing.B) net.Conn {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkTrackedConnWrite compares writing a gateway's WebSocket stream
// to a client on loopback TCP through trackedConn (which follows the frame
// boundaries) with writing it to the connection directly: small frames one
// per write, and a proxy's 32 KiB copy buffer full of them.
func BenchmarkTrackedConnWrite(b *testing.B) {
	small := wsFrame(0x1, bytes.Repeat([]byte{'x'}, 128), false)
	var full []byte
	for len(full)+len(small) <= 32<<10 {
		full = append(full, small...)
	}
	for _, bc := range []struct {
		name  string
		chunk []byte
	}{{"frame=128B", small}, {"buffer=32KiB", full}} {
		b.Run(bc.name+"/direct", func(b *testing.B) {
			c := loopbackConn(b)
			b.SetBytes(int64(len(bc.chunk)))
			for b.Loop() {
				if _, err := c.Write(bc.chunk); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/tracked", func(b *testing.B) {
			c := &trackedConn{Conn: loopbackConn(b)}
			b.SetBytes(int64(len(bc.chunk)))
			for b.Loop() {
				if _, err := c.Write(bc.chunk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWSFramesFeed is the frame-following alone, over a proxy's
// 32 KiB copy buffer of 128-byte frames.
func BenchmarkWSFramesFeed(b *testing.B) {
	small := wsFrame(0x1, bytes.Repeat([]byte{'x'}, 128), false)
	var full []byte
	for len(full)+len(small) <= 32<<10 {
		full = append(full, small...)
	}
	var f wsFrames
	b.SetBytes(int64(len(full)))
	for b.Loop() {
		for rest := full; len(rest) > 0; {
			rest = rest[f.feed(rest):]
		}
	}
}

// A goodbye in the middle of a stream written in chunks that cut across
// frames leaves the client whole frames, then the close frame, then
// nothing (or, when the frame in progress did not end in time, a cut
// frame and no close frame).
func TestGoodbyeDuringAStream(t *testing.T) {
	closing := closeFrame(goingAwayCode, goingAwayReason)
	for round := range 20 {
		tc, got := pipeConn(t)
		var stream []byte
		for i := range 200 {
			stream = append(stream, wsFrame(0x2, bytes.Repeat([]byte{byte(i)}, 1+i*37%300), false)...)
		}
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			for off, i := 0, 0; off < len(stream); i++ {
				end := min(off+1+(i*53+round)%700, len(stream))
				if _, err := tc.Write(stream[off:end]); err != nil {
					return
				}
				off = end
			}
		}()
		time.Sleep(time.Duration(round%5) * 100 * time.Microsecond)
		said := tc.goodbye(150 * time.Millisecond)
		<-wrote
		b := <-got

		var f wsFrames
		var last []byte
		whole := 0 // bytes of whole frames
		for off := 0; off < len(b); {
			n := f.feed(b[off:])
			last = b[off : off+n]
			off += n
			if f.idle() {
				whole = off
			}
		}
		switch {
		case said && (whole != len(b) || !bytes.Equal(last, closing)):
			t.Fatalf("round %d: goodbye reports a close frame, but the client's last %d bytes are % x", round, len(last), tail(last))
		case !said && whole != len(b) && bytes.Contains(b, closing):
			t.Fatalf("round %d: a close frame went out in the middle of a frame", round)
		}
		if said {
			if !bytes.HasPrefix(stream, b[:len(b)-len(closing)]) {
				t.Fatalf("round %d: the frames before the close frame are not the stream's first", round)
			}
		} else if !bytes.HasPrefix(stream, b) {
			t.Fatalf("round %d: the client received bytes that are not the stream's", round)
		}
	}
}
