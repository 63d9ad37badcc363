// Package pairing keeps the tailnet devices of one gateway and whether each is
// approved: a device is a Tailscale node, named by its stable node ID, and an
// approval holds for the node key it was given to. A device seen for the first
// time, or again with another node key (a re-registered machine), waits with a
// short pairing code until an operator approves it.
//
// A store keeps one key per device in Caddy's storage (see the key layout in
// record.go), so every Caddy instance that shares the storage shares the
// approvals. Storage has no change notification: each store keeps a copy of
// the devices and Refresh reads them again when the gateway's generation key
// changed. Every change is made under the storage's lock of the device's key,
// on the record as storage holds it then, so two instances approving at once
// lose nothing.
//
// The store fails closed. A record that cannot be parsed holds its device
// and is never written over; a storage that cannot be read holds every new
// or changed device at once, and the devices approved in the last good read
// for StaleFor more, after which every device is held until it reads again.
package pairing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Status is where a device stands.
type Status string

const (
	// StatusPending: the device waits for an operator.
	StatusPending Status = "pending"
	// StatusApproved: the device passes while its node key stays the same.
	StatusApproved Status = "approved"
)

// Reason says why a device is pending.
type Reason string

const (
	// ReasonNew: the device was never approved for this gateway.
	ReasonNew Reason = "new"
	// ReasonNodeKeyChanged: the device was approved with another node key
	// (re-registered, or its key rotated).
	ReasonNodeKeyChanged Reason = "node_key_changed"
	// ReasonAutoLapsed: the device was approved by an auto-approval rule it no
	// longer matches (a tag or capability was taken away).
	ReasonAutoLapsed Reason = "auto_approval_lapsed"
)

// maxIPs bounds the tailnet addresses kept per device (a node has one IPv4
// and one IPv6 address; a few more allow for renumbering).
const maxIPs = 4

// Device is one tailnet device as one gateway knows it.
type Device struct {
	// ID is the node's stable ID.
	ID string `json:"id"`
	// NodeKey is the node key the device was seen (pending) or approved with.
	NodeKey string `json:"node_key"`
	// Node is the short MagicDNS name.
	Node string `json:"node,omitempty"`
	// FQDN is the full MagicDNS name.
	FQDN string `json:"fqdn,omitempty"`
	// OS is the device's operating system, when the tailnet reports it.
	OS string `json:"os,omitempty"`
	// IPs are the tailnet addresses the device was seen from.
	IPs []string `json:"ips,omitempty"`
	// Login is the owner's login ("tagged-devices" for a tagged node).
	Login string `json:"login,omitempty"`
	// Tags are the node's ACL tags when last seen.
	Tags []string `json:"tags,omitempty"`
	// Status is pending or approved.
	Status Status `json:"status"`
	// Code is the pairing code a pending device shows; empty once approved.
	Code string `json:"code,omitempty"`
	// Reason is why a pending device waits.
	Reason Reason `json:"reason,omitempty"`
	// FirstSeen is when the device was first seen by this gateway.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// LastSeen is when the device last made a request, to within a minute
	// for an approved device (kept in memory and written with the next
	// change).
	LastSeen time.Time `json:"last_seen,omitzero"`
	// ApprovedAt is when the current approval was given.
	ApprovedAt time.Time `json:"approved_at,omitzero"`
	// ApprovedBy is who gave it: the operator as the admin endpoint knows
	// them (the OS user behind a unix socket, a client certificate, or
	// "unverified" on plain TCP), or the auto-approval rule.
	ApprovedBy string `json:"approved_by,omitempty"`
	// Auto reports whether an auto-approval rule gave the approval; it lasts
	// only while the device still matches one.
	Auto bool `json:"auto,omitempty"`
}

func (d *Device) clone() Device {
	c := *d
	c.IPs = slices.Clone(d.IPs)
	c.Tags = slices.Clone(d.Tags)
	return c
}

// Seen describes the device behind one request, as the tailnet reports it.
type Seen struct {
	ID, NodeKey, Node, FQDN, OS, Login string
	Tags                               []string
	// IP is the tailnet address the request came from.
	IP netip.Addr
	// AutoApprove is the auto-approval rule the device matches now, or "".
	AutoApprove string
}

// Event is what a Check changed.
type Event string

const (
	// EventNone: nothing changed.
	EventNone Event = ""
	// EventPending: the device now waits for approval (see Device.Reason).
	EventPending Event = "pending"
	// EventAutoApproved: an auto-approval rule approved the device.
	EventAutoApproved Event = "auto_approved"
)

// Verdict is the answer for one request.
type Verdict struct {
	// Approved reports whether the device may pass.
	Approved bool
	// Device is a copy of the device's record.
	Device Device
	// Event is what the check changed.
	Event Event
	// WasApproved reports whether an approval was taken back by this check
	// (a new node key, or a lapsed auto-approval).
	WasApproved bool
}

// ErrUnavailable wraps the reason a store cannot be used; the devices it
// concerns are held until storage reads again.
var ErrUnavailable = errors.New("device pairing storage is unavailable")

// ErrNotFound means no device matches the ID or code.
var ErrNotFound = errors.New("no such device")

// Storage is what a store needs of Caddy's storage (certmagic.Storage, set by
// the `storage` global option): keys written atomically, listed, and locked
// across every instance that shares them. Loading a missing key gives an
// error matching fs.ErrNotExist.
type Storage interface {
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string, recursive bool) ([]string, error)
}

// Options tune a store.
type Options struct {
	// MaxPending bounds the pending devices kept; the one seen longest ago is
	// forgotten first. Default: 256.
	MaxPending int
	// StaleFor is how long the devices approved in the last good read keep
	// passing while storage cannot be read. Default: DefaultStaleFor.
	StaleFor time.Duration
	// Timeout bounds each storage operation (a lock held by another
	// instance included). Default: 10 s.
	Timeout time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// DefaultStaleFor is how long approved devices pass on the last good read
// of a storage that cannot be read: long enough to ride out a storage
// restart, short enough that a revocation made elsewhere meanwhile is not
// ignored for long.
const DefaultStaleFor = 30 * time.Second

// fullReadEvery is how often Refresh reads every device even when the
// generation key did not change: a change whose writer stopped before it
// wrote the generation, or a key edited by hand, is seen within it.
const fullReadEvery = time.Minute

// retryEvery is how often a request tries a storage in error again, so a
// store that is not refreshed (a tool, a test) recovers too.
const retryEvery = 2 * time.Second

// Store is one gateway's devices in a storage. It is safe for concurrent
// use; changes are written to storage before they are reported.
type Store struct {
	st         Storage
	gateway    string
	maxPending int
	staleFor   time.Duration
	timeout    time.Duration
	now        func() time.Time

	locks     keyedMutex // one change per device at a time in this process
	refreshMu sync.Mutex // one read at a time, so an older read never replaces a newer one

	mu      sync.RWMutex
	devices map[string]*Device // the last good read and this store's changes since; nil before the first read
	broken  map[string]error   // devices whose record cannot be parsed: held
	gen     string             // the generation key at the last good read
	goodAt  time.Time          // when storage was last read in full
	err     error              // why the last read failed, or nil
	triedAt time.Time          // when the last read was tried
	expired bool               // the last good read has outlived StaleFor
	seq     uint64             // counts this store's changes
	touched map[string]uint64  // device → seq of this store's last change to it
}

// Open returns the store of gateway's devices in st, after a first read;
// Err says whether it could be read.
func Open(st Storage, gateway string, opts Options) *Store {
	s := &Store{st: st, gateway: gateway, maxPending: opts.MaxPending, staleFor: opts.StaleFor, timeout: opts.Timeout,
		now: opts.Now, touched: map[string]uint64{}}
	if s.maxPending <= 0 {
		s.maxPending = 256
	}
	if s.staleFor <= 0 {
		s.staleFor = DefaultStaleFor
	}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	if s.now == nil {
		s.now = time.Now
	}
	ctx, cancel := s.opContext()
	defer cancel()
	s.Refresh(ctx, true)
	return s
}

// Gateway returns the gateway whose devices the store keeps.
func (s *Store) Gateway() string { return s.gateway }

// Prefix returns the storage prefix of the store's keys.
func (s *Store) Prefix() string { return Prefix(s.gateway) }

func (s *Store) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// Err returns why the store cannot be used (wrapping ErrUnavailable), or
// nil, also while it answers from a last good read that has not gone stale.
func (s *Store) Err() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.unavailableLocked(s.now())
}

// ReadErr returns why the last read of storage failed, or nil: unlike Err,
// also while the last good read still stands.
func (s *Store) ReadErr() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.err
}

func (s *Store) unavailableLocked(now time.Time) error {
	switch {
	case s.devices == nil && s.err != nil:
		return s.err
	case s.devices == nil:
		return fmt.Errorf("%w: not read yet", ErrUnavailable)
	case s.err != nil && now.Sub(s.goodAt) > s.staleFor:
		return fmt.Errorf("%w (approved devices are held too: the last good read is from %s)", s.err, s.goodAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// retryIfFailed reads storage again when the last read failed long enough
// ago.
func (s *Store) retryIfFailed() {
	s.mu.RLock()
	retry := s.err != nil && s.now().Sub(s.triedAt) >= retryEvery
	s.mu.RUnlock()
	if retry {
		ctx, cancel := s.opContext()
		defer cancel()
		s.Refresh(ctx, true)
	}
}

// RefreshResult is what one Refresh found.
type RefreshResult struct {
	// Read reports whether the devices were read again.
	Read bool
	// Lapsed are the devices that were approved before and are not now, or
	// are approved for another node key: their connections must close. When
	// the last good read outlives StaleFor, they are every device it
	// approved.
	Lapsed []Device
	// Err is why storage could not be read (wrapping ErrUnavailable).
	Err error
	// Failed reports whether this read is the first to fail after a good
	// one; Expired whether the last good read has just outlived StaleFor;
	// Recovered whether storage reads again after failing.
	Failed, Expired, Recovered bool
}

// Refresh reads the devices again when the generation key changed since the
// last read, when a full read is due, or when force is set, and reports
// what changed. A failed read keeps the last good one, which holds approved
// devices for StaleFor.
func (s *Store) Refresh(ctx context.Context, force bool) RefreshResult {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.mu.RLock()
	start, gen, due := s.seq, s.gen, s.devices == nil || s.err != nil || s.now().Sub(s.goodAt) >= fullReadEvery
	s.mu.RUnlock()

	newGen, err := s.loadGeneration(ctx)
	if err == nil && !force && !due && newGen == gen {
		return RefreshResult{}
	}
	var devices map[string]*Device
	var broken map[string]error
	if err == nil {
		devices, broken, err = s.readAll(ctx)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.triedAt = now
	if err != nil {
		res := RefreshResult{Err: fmt.Errorf("%w: reading %s: %w", ErrUnavailable, s.Prefix(), err), Failed: s.err == nil}
		s.err = res.Err
		if s.devices != nil && !s.expired && now.Sub(s.goodAt) > s.staleFor {
			s.expired, res.Expired = true, true
			for _, d := range s.devices {
				if d.Status == StatusApproved {
					res.Lapsed = append(res.Lapsed, d.clone())
				}
			}
		}
		return res
	}
	// What this store changed while the read ran is newer than the read.
	for id, at := range s.touched {
		if at <= start {
			delete(s.touched, id)
			continue
		}
		if d := s.devices[id]; d != nil {
			devices[id] = d
		} else {
			delete(devices, id)
		}
		delete(broken, id)
	}
	res := RefreshResult{Read: true, Recovered: s.err != nil}
	for id, old := range s.devices {
		d := devices[id]
		if d != nil && d.NodeKey == old.NodeKey && old.LastSeen.After(d.LastSeen) {
			d.LastSeen = old.LastSeen // kept in memory between changes
		}
		if old.Status == StatusApproved && !s.expired && (d == nil || d.Status != StatusApproved || d.NodeKey != old.NodeKey) {
			res.Lapsed = append(res.Lapsed, old.clone())
		}
	}
	s.devices, s.broken, s.gen, s.goodAt, s.err, s.expired = devices, broken, newGen, now, nil, false
	return res
}

// loadGeneration returns the generation key's value, "" when there is none.
func (s *Store) loadGeneration(ctx context.Context) (string, error) {
	b, err := s.st.Load(ctx, generationKey(s.gateway))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("loading the generation: %w", err)
	}
	return string(b), nil
}

// readAll reads every device. A record that does not parse is returned in
// broken; any storage error fails the whole read.
func (s *Store) readAll(ctx context.Context) (map[string]*Device, map[string]error, error) {
	keys, err := s.st.List(ctx, devicesPrefix(s.gateway), false)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("listing devices: %w", err)
	}
	devices := make(map[string]*Device, len(keys))
	broken := map[string]error{}
	for _, key := range keys {
		id, ok := idFromKey(key)
		if !ok {
			continue // not a device record (a storage module's temporary file)
		}
		d, err := s.load(ctx, id)
		switch {
		case errors.Is(err, errBroken):
			broken[id] = err
		case err != nil:
			return nil, nil, err
		case d != nil:
			devices[id] = d
		}
	}
	return devices, broken, nil
}

// errBroken marks a record that was read but cannot be used.
var errBroken = errors.New("unusable record")

// load reads one device's record: nil when there is none, an error wrapping
// errBroken when it does not parse.
func (s *Store) load(ctx context.Context, id string) (*Device, error) {
	key := deviceKey(s.gateway, id)
	data, err := s.st.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", key, err)
	}
	d, err := decodeRecord(data, s.gateway, id)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errBroken, key, err)
	}
	return &d, nil
}

// write stores d and a new generation, so other instances read it.
func (s *Store) write(ctx context.Context, d *Device) error {
	data, err := encodeRecord(s.gateway, *d)
	if err != nil {
		return err
	}
	key := deviceKey(s.gateway, d.ID)
	if err := s.st.Store(ctx, key, data); err != nil {
		return fmt.Errorf("%w: storing %s: %w", ErrUnavailable, key, err)
	}
	return s.announce(ctx)
}

// announce writes a new generation. A change whose generation is lost is
// still read by every instance's next full read.
func (s *Store) announce(ctx context.Context) error {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	if err := s.st.Store(ctx, generationKey(s.gateway), []byte(hex.EncodeToString(b[:]))); err != nil {
		return fmt.Errorf("%w: storing the generation of %s (the change is stored; other instances see it within %v): %w",
			ErrUnavailable, s.Prefix(), fullReadEvery, err)
	}
	return nil
}

// lock takes the device's lock in this process and in storage.
func (s *Store) lock(ctx context.Context, id string) (func(), error) {
	release := s.locks.lock(id)
	name := deviceKey(s.gateway, id)
	if err := s.st.Lock(ctx, name); err != nil {
		release()
		return nil, fmt.Errorf("%w: locking %s: %w", ErrUnavailable, name, err)
	}
	return func() {
		ctx, cancel := s.opContext()
		defer cancel()
		_ = s.st.Unlock(ctx, name)
		release()
	}, nil
}

// commit records this store's change to a device (d nil: forgotten).
func (s *Store) commit(id string, d *Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commitLocked(id, d)
}

func (s *Store) commitLocked(id string, d *Device) {
	if s.devices == nil {
		return // never read: the first good read brings the change
	}
	if d == nil {
		delete(s.devices, id)
	} else {
		s.devices[id] = d
	}
	delete(s.broken, id)
	s.seq++
	s.touched[id] = s.seq
}

// Check decides whether the device behind one request passes, recording it
// when it is new or changed. The error wraps ErrUnavailable when the device
// cannot be decided; it is then held.
func (s *Store) Check(seen Seen) (Verdict, error) {
	if v, ok := s.checkSteady(seen); ok {
		return v, nil
	}
	s.retryIfFailed()
	s.mu.Lock()
	now := s.now()
	if err := s.unavailableLocked(now); err != nil {
		s.mu.Unlock()
		return Verdict{}, err
	}
	if err := s.broken[seen.ID]; err != nil {
		s.mu.Unlock()
		return Verdict{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if d := s.devices[seen.ID]; d != nil && !needsChange(d, seen) {
		// Seen again as recorded: facts and LastSeen are kept in memory
		// and written with the device's next change.
		d.LastSeen = now
		updateFacts(d, seen)
		v := Verdict{Approved: d.Status == StatusApproved, Device: d.clone()}
		s.mu.Unlock()
		return v, nil
	}
	s.mu.Unlock()
	return s.checkChange(seen)
}

// needsChange reports whether seeing the device as seen changes its record.
func needsChange(d *Device, seen Seen) bool {
	return d.NodeKey != seen.NodeKey ||
		(d.Status == StatusApproved && d.Auto && seen.AutoApprove == "") ||
		(d.Status == StatusPending && seen.AutoApprove != "")
}

// checkChange is Check for a device that is new or changed as far as this
// store knows: it decides on the record storage holds under the device's
// lock, which another instance may have written meanwhile.
func (s *Store) checkChange(seen Seen) (Verdict, error) {
	ctx, cancel := s.opContext()
	defer cancel()
	unlock, err := s.lock(ctx, seen.ID)
	if err != nil {
		return Verdict{}, err
	}
	d, err := s.load(ctx, seen.ID)
	if err != nil {
		unlock()
		return Verdict{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	now := s.now()
	var v Verdict
	switch {
	case d == nil:
		d = &Device{ID: seen.ID, NodeKey: seen.NodeKey, FirstSeen: now}
		if v.Event, err = s.admit(d, seen, now, ReasonNew); err != nil {
			unlock()
			return Verdict{}, err
		}
	case d.NodeKey != seen.NodeKey:
		// Another node key is another machine as far as approval goes: the
		// old approval does not carry over, and a pending code shown for the
		// old key must not approve the new one.
		v.WasApproved = d.Status == StatusApproved
		d.NodeKey = seen.NodeKey
		if v.Event, err = s.admit(d, seen, now, ReasonNodeKeyChanged); err != nil {
			unlock()
			return Verdict{}, err
		}
	case d.Status == StatusApproved && d.Auto && seen.AutoApprove == "":
		v.WasApproved = true
		if err := s.pend(d, ReasonAutoLapsed); err != nil {
			unlock()
			return Verdict{}, err
		}
		v.Event = EventPending
	case d.Status == StatusPending && seen.AutoApprove != "":
		autoApprove(d, seen, now)
		v.Event = EventAutoApproved
	}
	d.LastSeen = now
	updateFacts(d, seen)
	if v.Event != EventNone {
		if err := s.write(ctx, d); err != nil {
			unlock()
			return Verdict{}, err
		}
	}
	// Once committed, d is the store's copy, which requests update under
	// the lock: the answer is taken before.
	v.Approved = d.Status == StatusApproved
	v.Device = d.clone()
	s.commit(d.ID, d)
	unlock()
	if v.Event == EventPending {
		s.evictPending(d.ID)
	}
	return v, nil
}

// admit approves d by the auto_approve rule seen carries, or without one
// holds it pending for why, and says which it did.
func (s *Store) admit(d *Device, seen Seen, now time.Time, why Reason) (Event, error) {
	if seen.AutoApprove != "" {
		autoApprove(d, seen, now)
		return EventAutoApproved, nil
	}
	if err := s.pend(d, why); err != nil {
		return EventNone, err
	}
	return EventPending, nil
}

// lastSeenEvery is how stale an approved device's LastSeen may get before a
// request refreshes it (under the write lock).
const lastSeenEvery = time.Minute

// checkSteady answers the steady state, an approved device seen again with
// the same node key and the same facts, under the read lock: that is every
// request of a paired device, and it must neither wait for other devices'
// requests nor allocate facts again. Anything else (a new or changed device,
// a lapsed auto-approval, a store past its last good read, a LastSeen older
// than lastSeenEvery) is left to Check's locked path.
func (s *Store) checkSteady(seen Seen) (Verdict, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	if s.devices == nil || (s.err != nil && now.Sub(s.goodAt) > s.staleFor) {
		return Verdict{}, false
	}
	d := s.devices[seen.ID]
	if d == nil || d.Status != StatusApproved || d.NodeKey != seen.NodeKey || (d.Auto && seen.AutoApprove == "") {
		return Verdict{}, false
	}
	if now.Sub(d.LastSeen) >= lastSeenEvery || !sameFacts(d, seen) {
		return Verdict{}, false
	}
	return Verdict{Approved: true, Device: d.clone()}, true
}

// sameFacts reports whether updateFacts would leave d as it is.
func sameFacts(d *Device, seen Seen) bool {
	if d.Node != seen.Node || d.FQDN != seen.FQDN || d.Login != seen.Login ||
		(seen.OS != "" && d.OS != seen.OS) || !slices.Equal(d.Tags, seen.Tags) {
		return false
	}
	if !seen.IP.IsValid() {
		return true
	}
	var buf [64]byte
	ip := seen.IP.Unmap().AppendTo(buf[:0])
	for _, known := range d.IPs {
		if known == string(ip) {
			return true
		}
	}
	return false
}

// pend makes d wait with a fresh code.
func (s *Store) pend(d *Device, why Reason) error {
	code, err := s.freshCode()
	if err != nil {
		return err
	}
	d.Status, d.Code, d.Reason = StatusPending, code, why
	d.ApprovedAt, d.ApprovedBy, d.Auto = time.Time{}, "", false
	return nil
}

// evictPending forgets the pending devices seen longest ago while there are
// more than MaxPending, keeping keep; each is forgotten only if storage
// still holds it pending with the same code.
func (s *Store) evictPending(keep string) {
	s.mu.RLock()
	var pending []Device
	for _, p := range s.devices {
		if p.Status == StatusPending && p.ID != keep {
			pending = append(pending, p.clone())
		}
	}
	s.mu.RUnlock()
	over := len(pending) + 1 - s.maxPending
	if over <= 0 {
		return
	}
	slices.SortFunc(pending, func(a, b Device) int { return a.LastSeen.Compare(b.LastSeen) })
	for _, p := range pending[:over] {
		ctx, cancel := s.opContext()
		if unlock, err := s.lock(ctx, p.ID); err == nil {
			if d, err := s.load(ctx, p.ID); err == nil && d != nil && d.Status == StatusPending && d.Code == p.Code {
				if s.st.Delete(ctx, deviceKey(s.gateway, p.ID)) == nil {
					s.commit(p.ID, nil)
				}
			}
			unlock()
		}
		cancel()
	}
	ctx, cancel := s.opContext()
	_ = s.announce(ctx)
	cancel()
}

func (s *Store) freshCode() (string, error) {
	for range 8 {
		code, err := newCode()
		if err != nil {
			return "", err
		}
		s.mu.RLock()
		used := s.byCodeLocked(code) != nil
		s.mu.RUnlock()
		if !used {
			return code, nil
		}
	}
	return "", errors.New("generating pairing code: no unused code found")
}

func autoApprove(d *Device, seen Seen, now time.Time) {
	d.Status, d.Code, d.Reason = StatusApproved, "", ""
	d.ApprovedAt, d.ApprovedBy, d.Auto = now, "auto_approve "+seen.AutoApprove, true
}

// updateFacts refreshes what the tailnet says about the device.
func updateFacts(d *Device, seen Seen) {
	d.Node, d.FQDN, d.Login = seen.Node, seen.FQDN, seen.Login
	if seen.OS != "" {
		d.OS = seen.OS
	}
	d.Tags = slices.Clone(seen.Tags)
	if seen.IP.IsValid() {
		ip := seen.IP.Unmap().String()
		if !slices.Contains(d.IPs, ip) {
			d.IPs = append(d.IPs, ip)
			if len(d.IPs) > maxIPs {
				d.IPs = d.IPs[len(d.IPs)-maxIPs:]
			}
		}
	}
}

func (s *Store) byCodeLocked(code string) *Device {
	for _, d := range s.devices {
		if d.Code == code {
			return d
		}
	}
	return nil
}

// resolve returns the ID of the device with ID ref, else of the pending
// device whose code is ref (and the code), reading storage again before it
// answers ErrNotFound: a code shown by another instance a moment ago may not
// have been read here yet.
func (s *Store) resolve(ref string) (id, code string, err error) {
	s.retryIfFailed()
	for attempt := 0; ; attempt++ {
		s.mu.RLock()
		err = s.unavailableLocked(s.now())
		if err == nil {
			if s.devices[ref] != nil || s.broken[ref] != nil {
				id = ref
			} else if c, ok := ParseCode(ref); ok {
				if d := s.byCodeLocked(c); d != nil {
					id, code = d.ID, c
				}
			}
		}
		s.mu.RUnlock()
		if err != nil || id != "" {
			return id, code, err
		}
		if attempt == 1 {
			return "", "", ErrNotFound
		}
		ctx, cancel := s.opContext()
		s.Refresh(ctx, true)
		cancel()
	}
}

// Find returns the device with ID ref or pairing code ref.
func (s *Store) Find(ref string) (Device, error) {
	id, _, err := s.resolve(ref)
	if err != nil {
		return Device{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.broken[id]; err != nil {
		return Device{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if d := s.devices[id]; d != nil {
		return d.clone(), nil
	}
	return Device{}, ErrNotFound
}

// Approve approves the device with ID ref or pairing code ref for the node
// key storage holds for it. It reports whether anything changed (false for a
// device that was already approved by an operator). A code approves only
// while storage still holds the device pending with that code.
func (s *Store) Approve(ref, by string) (Device, bool, error) {
	id, code, err := s.resolve(ref)
	if err != nil {
		return Device{}, false, err
	}
	ctx, cancel := s.opContext()
	defer cancel()
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return Device{}, false, err
	}
	defer unlock()
	d, err := s.load(ctx, id)
	if err != nil {
		return Device{}, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if d == nil {
		s.commit(id, nil) // revoked meanwhile
		return Device{}, false, ErrNotFound
	}
	if d.Status == StatusApproved && !d.Auto {
		out := d.clone()
		s.commit(id, d)
		return out, false, nil
	}
	if code != "" && d.Code != code {
		// The device was seen with another node key meanwhile: the code
		// shown for the old key approves nothing.
		s.commit(id, d)
		return Device{}, false, ErrNotFound
	}
	d.Status, d.Code, d.Reason = StatusApproved, "", ""
	d.ApprovedAt, d.ApprovedBy, d.Auto = s.now(), by, false
	if err := s.write(ctx, d); err != nil {
		return Device{}, false, err
	}
	out := d.clone()
	s.commit(id, d)
	return out, true, nil
}

// Revoke forgets the device with ID ref or pairing code ref, approved or
// pending, or whose record cannot be parsed: its next request waits for
// approval with a new code. It returns the forgotten record.
func (s *Store) Revoke(ref string) (Device, error) {
	id, _, err := s.resolve(ref)
	if err != nil {
		return Device{}, err
	}
	ctx, cancel := s.opContext()
	defer cancel()
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return Device{}, err
	}
	defer unlock()
	d, err := s.load(ctx, id)
	switch {
	case errors.Is(err, errBroken):
		d = &Device{ID: id}
	case err != nil:
		return Device{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case d == nil:
		s.commit(id, nil) // revoked meanwhile
		return Device{}, ErrNotFound
	}
	key := deviceKey(s.gateway, id)
	if err := s.st.Delete(ctx, key); err != nil {
		return Device{}, fmt.Errorf("%w: deleting %s: %w", ErrUnavailable, key, err)
	}
	s.commit(id, nil)
	if err := s.announce(ctx); err != nil {
		return Device{}, err
	}
	return d.clone(), nil
}

// List returns every device, first seen first.
func (s *Store) List() ([]Device, error) {
	s.retryIfFailed()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.unavailableLocked(s.now()); err != nil {
		return nil, err
	}
	out := make([]Device, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, d.clone())
	}
	slices.SortFunc(out, func(a, b Device) int {
		if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Broken returns the devices whose record cannot be parsed, with why; each
// is held until its record is fixed or revoked.
func (s *Store) Broken() map[string]error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]error, len(s.broken))
	for id, err := range s.broken {
		out[id] = err
	}
	return out
}

// keyedMutex is a mutex per key, kept only while in use.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	sync.Mutex
	users int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.users++
	k.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		k.mu.Lock()
		if e.users--; e.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
