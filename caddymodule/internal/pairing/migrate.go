package pairing

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// Migration is what Migrate did.
type Migration struct {
	// File is the approval file that was read.
	File string
	// Moved counts the devices written to storage; Kept those storage
	// already held (it is newer, so it stays as it is).
	Moved, Kept int
	// RenamedTo is where the file was moved once every device was in
	// storage; Note is the file beside it saying so.
	RenamedTo, Note string
}

// MigratedSuffix is added to an approval file's name once its devices are in
// Caddy's storage.
const MigratedSuffix = ".migrated"

// Migrate moves the devices of an approval file from before approvals lived
// in Caddy's storage into the store, then renames the file with
// MigratedSuffix and writes a note beside it. A device that storage already
// holds is left as storage has it, so running it again (after a crash
// halfway, or from two instances at once) changes nothing. It returns a nil
// Migration when there is no file; when the file cannot be read or parsed
// nothing is moved and the file stays where it is.
func (s *Store) Migrate(file string) (*Migration, error) {
	devices, err := readFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the approval file %s: %w", file, err)
	}
	m := &Migration{File: file}
	for i := range devices {
		moved, err := s.migrateDevice(&devices[i])
		if err != nil {
			return m, fmt.Errorf("migrating device %q from %s: %w", devices[i].ID, file, err)
		}
		if moved {
			m.Moved++
		} else {
			m.Kept++
		}
	}
	ctx, cancel := s.opContext()
	defer cancel()
	if err := s.announce(ctx); err != nil {
		return m, err
	}
	s.Refresh(ctx, true)

	target, err := freeName(file + MigratedSuffix)
	if err != nil {
		return m, err
	}
	if err := os.Rename(file, target); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return m, nil // another instance renamed it first
		}
		return m, fmt.Errorf("renaming %s: %w", file, err)
	}
	m.RenamedTo = target
	m.Note = target + ".txt"
	note := fmt.Sprintf(`This file held the device approvals of clawgate gateway %q until %s.
They now live in Caddy's storage (the storage global option), one key per
device under %s/devices/. %d device(s) were moved; %d were already there and
kept as storage had them. clawgate no longer reads this file: list devices
with "caddy clawgate devices list". It can be deleted.
`, s.gateway, time.Now().UTC().Format(time.RFC3339), s.Prefix(), m.Moved, m.Kept)
	if err := os.WriteFile(m.Note, []byte(note), 0o600); err != nil {
		return m, fmt.Errorf("writing %s: %w", m.Note, err)
	}
	return m, nil
}

// migrateDevice writes d unless storage holds the device already, and
// reports whether it wrote it.
func (s *Store) migrateDevice(d *Device) (bool, error) {
	ctx, cancel := s.opContext()
	defer cancel()
	unlock, err := s.lock(ctx, d.ID)
	if err != nil {
		return false, err
	}
	defer unlock()
	have, err := s.load(ctx, d.ID)
	if errors.Is(err, errBroken) {
		return false, nil // storage's record is newer; it stays held until fixed
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if have != nil {
		return false, nil
	}
	data, err := encodeRecord(s.gateway, *d)
	if err != nil {
		return false, err
	}
	key := deviceKey(s.gateway, d.ID)
	if err := s.st.Store(ctx, key, data); err != nil {
		return false, fmt.Errorf("%w: storing %s: %w", ErrUnavailable, key, err)
	}
	return true, nil
}

// freeName returns name, or name with the first free ".N" after it.
func freeName(name string) (string, error) {
	for i := 1; i < 1000; i++ {
		try := name
		if i > 1 {
			try = name + "." + strconv.Itoa(i)
		}
		if _, err := os.Lstat(try); errors.Is(err, fs.ErrNotExist) {
			return try, nil
		}
	}
	return "", fmt.Errorf("no free name like %s", strings.TrimSpace(name))
}
