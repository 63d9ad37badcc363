// Package pairing keeps the tailnet devices of one gateway and whether each is
// approved: a device is a Tailscale node, named by its stable node ID, and an
// approval holds for the node key it was given to. A device seen for the first
// time, or again with another node key (a re-registered machine), waits with a
// short pairing code until an operator approves it.
//
// A store is a small JSON file, written atomically and 0600. When it cannot be
// read or parsed, the store fails closed: nothing is approved and nothing is
// written over the file until it reads again.
package pairing

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
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
	// SaveErr is set when a change could not be written; it holds in memory.
	SaveErr error
}

// ErrUnavailable wraps the reason a store cannot be used; every device is
// held until it reads again.
var ErrUnavailable = errors.New("device pairing storage is unavailable")

// ErrNotFound means no device matches the ID or code.
var ErrNotFound = errors.New("no such device")

// Options tune a store.
type Options struct {
	// MaxPending bounds the pending devices kept; the one seen longest ago is
	// forgotten first. Default: 256.
	MaxPending int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// retryEvery is how often a failed store tries to read its file again while
// requests come in, so a fixed file is picked up without a reload.
const retryEvery = 2 * time.Second

// Store is one gateway's devices, backed by one file. It is safe for
// concurrent use; changes are written before they are reported.
type Store struct {
	path       string
	maxPending int
	now        func() time.Time

	mu       sync.RWMutex
	devices  map[string]*Device // nil while err != nil
	err      error              // why the file cannot be used
	lastLoad time.Time
}

// stores shares one Store per file within the process, so the configs that
// overlap during a Caddy reload never write the same file from two copies and
// lose each other's changes.
var stores = struct {
	sync.Mutex
	m map[string]*Store
}{m: map[string]*Store{}}

// Open returns the process's store for path, (re)reading the file: a config
// load picks up a file that was restored or fixed while Caddy ran. Check Err
// for whether it could be read.
func Open(path string, opts Options) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("device pairing storage %q: %w", path, err)
	}
	stores.Lock()
	s := stores.m[abs]
	if s == nil {
		s = newStore(abs, opts)
		stores.m[abs] = s
	}
	stores.Unlock()
	s.mu.Lock()
	s.setOptions(opts)
	s.loadLocked()
	s.mu.Unlock()
	return s, nil
}

// New reads a store that is not shared with Open's; for tools and tests that
// look at a file on their own.
func New(path string, opts Options) *Store {
	s := newStore(path, opts)
	s.mu.Lock()
	s.loadLocked()
	s.mu.Unlock()
	return s
}

func newStore(path string, opts Options) *Store {
	s := &Store{path: path}
	s.setOptions(opts)
	return s
}

func (s *Store) setOptions(opts Options) {
	s.maxPending = opts.MaxPending
	if s.maxPending <= 0 {
		s.maxPending = 256
	}
	s.now = opts.Now
	if s.now == nil {
		s.now = time.Now
	}
}

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Err returns why the store cannot be used (wrapping ErrUnavailable), or nil.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Store) loadLocked() {
	s.lastLoad = s.now()
	devices, err := readFile(s.path)
	if err != nil {
		s.devices = nil
		s.err = fmt.Errorf("%w: %s: %w", ErrUnavailable, s.path, err)
		return
	}
	s.devices, s.err = devices, nil
}

// usableLocked returns the store's error, after trying the file again when
// the last try is long enough ago.
func (s *Store) usableLocked() error {
	if s.err != nil && s.now().Sub(s.lastLoad) >= retryEvery {
		s.loadLocked()
	}
	return s.err
}

// saveLocked writes the devices.
func (s *Store) saveLocked() error {
	list := make([]Device, 0, len(s.devices))
	for _, d := range s.devices {
		list = append(list, *d)
	}
	data, err := Encode(list)
	if err != nil {
		return err
	}
	if err := writeFile(s.path, data); err != nil {
		return fmt.Errorf("saving device pairing storage %s: %w", s.path, err)
	}
	return nil
}

// Check decides whether the device behind one request passes, recording it
// when it is new or changed. The error wraps ErrUnavailable when the store
// cannot be used; the device is then held.
func (s *Store) Check(seen Seen) (Verdict, error) {
	if v, ok := s.checkSteady(seen); ok {
		return v, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return Verdict{}, err
	}
	now := s.now()
	d := s.devices[seen.ID]
	var v Verdict
	switch {
	case d == nil:
		d = &Device{ID: seen.ID, FirstSeen: now}
		s.devices[seen.ID] = d
		d.NodeKey = seen.NodeKey
		if seen.AutoApprove != "" {
			s.autoApproveLocked(d, seen, now)
			v.Event = EventAutoApproved
		} else if err := s.pendLocked(d, ReasonNew); err != nil {
			delete(s.devices, seen.ID)
			return Verdict{}, err
		} else {
			v.Event = EventPending
		}
	case d.NodeKey != seen.NodeKey:
		// Another node key is another machine as far as approval goes: the
		// old approval does not carry over, and a pending code shown for the
		// old key must not approve the new one.
		v.WasApproved = d.Status == StatusApproved
		d.NodeKey = seen.NodeKey
		if seen.AutoApprove != "" {
			s.autoApproveLocked(d, seen, now)
			v.Event = EventAutoApproved
		} else if err := s.pendLocked(d, ReasonNodeKeyChanged); err != nil {
			return Verdict{}, err
		} else {
			v.Event = EventPending
		}
	case d.Status == StatusApproved && d.Auto && seen.AutoApprove == "":
		v.WasApproved = true
		if err := s.pendLocked(d, ReasonAutoLapsed); err != nil {
			return Verdict{}, err
		}
		v.Event = EventPending
	case d.Status == StatusPending && seen.AutoApprove != "":
		s.autoApproveLocked(d, seen, now)
		v.Event = EventAutoApproved
	}
	d.LastSeen = now
	updateFacts(d, seen)
	if v.Event != EventNone {
		v.SaveErr = s.saveLocked()
	}
	v.Approved = d.Status == StatusApproved
	v.Device = d.clone()
	return v, nil
}

// lastSeenEvery is how stale an approved device's LastSeen may get before a
// request refreshes it (under the write lock).
const lastSeenEvery = time.Minute

// checkSteady answers the steady state, an approved device seen again with
// the same node key and the same facts, under the read lock: that is every
// request of a paired device, and it must neither wait for other devices'
// requests nor allocate facts again. Anything else (a new or changed device,
// a lapsed auto-approval, a store in error, a LastSeen older than
// lastSeenEvery) is left to Check's locked path.
func (s *Store) checkSteady(seen Seen) (Verdict, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.err != nil {
		return Verdict{}, false
	}
	d := s.devices[seen.ID]
	if d == nil || d.Status != StatusApproved || d.NodeKey != seen.NodeKey || (d.Auto && seen.AutoApprove == "") {
		return Verdict{}, false
	}
	if s.now().Sub(d.LastSeen) >= lastSeenEvery || !sameFacts(d, seen) {
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

// pendLocked makes d wait with a fresh code, forgetting the pending device
// seen longest ago when there are too many.
func (s *Store) pendLocked(d *Device, why Reason) error {
	code, err := s.freshCodeLocked()
	if err != nil {
		return err
	}
	d.Status, d.Code, d.Reason = StatusPending, code, why
	d.ApprovedAt, d.ApprovedBy, d.Auto = time.Time{}, "", false
	var pending []*Device
	for _, p := range s.devices {
		if p.Status == StatusPending && p != d {
			pending = append(pending, p)
		}
	}
	if over := len(pending) + 1 - s.maxPending; over > 0 {
		slices.SortFunc(pending, func(a, b *Device) int { return a.LastSeen.Compare(b.LastSeen) })
		for _, p := range pending[:over] {
			delete(s.devices, p.ID)
		}
	}
	return nil
}

func (s *Store) freshCodeLocked() (string, error) {
	for range 8 {
		code, err := newCode()
		if err != nil {
			return "", err
		}
		if s.byCodeLocked(code) == nil {
			return code, nil
		}
	}
	return "", errors.New("generating pairing code: no unused code found")
}

func (s *Store) autoApproveLocked(d *Device, seen Seen, now time.Time) {
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

// findLocked returns the device with ID ref, else the pending device whose
// code is ref.
func (s *Store) findLocked(ref string) *Device {
	if d := s.devices[ref]; d != nil {
		return d
	}
	if code, ok := ParseCode(ref); ok {
		return s.byCodeLocked(code)
	}
	return nil
}

// Find returns the device with ID ref or pairing code ref.
func (s *Store) Find(ref string) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return Device{}, err
	}
	d := s.findLocked(ref)
	if d == nil {
		return Device{}, ErrNotFound
	}
	return d.clone(), nil
}

// Approve approves the device with ID ref or pairing code ref for the node
// key it was last seen with. It reports whether anything changed (false for
// a device that was already approved by an operator).
func (s *Store) Approve(ref, by string) (Device, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return Device{}, false, err
	}
	d := s.findLocked(ref)
	if d == nil {
		return Device{}, false, ErrNotFound
	}
	if d.Status == StatusApproved && !d.Auto {
		return d.clone(), false, nil
	}
	old := d.clone()
	d.Status, d.Code, d.Reason = StatusApproved, "", ""
	d.ApprovedAt, d.ApprovedBy, d.Auto = s.now(), by, false
	if err := s.saveLocked(); err != nil {
		*d = old
		return Device{}, false, err
	}
	return d.clone(), true, nil
}

// Revoke forgets the device with ID ref or pairing code ref, approved or
// pending: its next request waits for approval with a new code. It returns
// the forgotten record.
func (s *Store) Revoke(ref string) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return Device{}, err
	}
	d := s.findLocked(ref)
	if d == nil {
		return Device{}, ErrNotFound
	}
	delete(s.devices, d.ID)
	if err := s.saveLocked(); err != nil {
		s.devices[d.ID] = d
		return Device{}, err
	}
	return d.clone(), nil
}

// List returns every device, first seen first.
func (s *Store) List() ([]Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
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
