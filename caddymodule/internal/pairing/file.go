package pairing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// fileVersion is the storage format written by this package; any other
// version is refused rather than guessed at.
const fileVersion = 1

// maxFileSize bounds what is read: a store of many thousand devices is far
// smaller, and anything bigger is not ours.
const maxFileSize = 16 << 20

// file is the storage format.
type file struct {
	Version int      `json:"version"`
	Devices []Device `json:"devices"`
}

// Encode returns the storage form of devices, sorted by ID so that equal
// stores give equal files.
func Encode(devices []Device) ([]byte, error) {
	f := file{Version: fileVersion, Devices: slices.Clone(devices)}
	if f.Devices == nil {
		f.Devices = []Device{}
	}
	slices.SortFunc(f.Devices, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding devices: %w", err)
	}
	return append(b, '\n'), nil
}

// Decode parses a stored file strictly: unknown fields, trailing data, an
// unknown version or an inconsistent record make it an error, because a
// store that is only partly understood must not approve anything.
func Decode(data []byte) ([]Device, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file (a store is never written empty: truncated?)")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parsing: data after the end of the store")
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("version %d: want %d", f.Version, fileVersion)
	}
	ids := make(map[string]bool, len(f.Devices))
	codes := make(map[string]bool)
	for i, d := range f.Devices {
		if err := d.validate(); err != nil {
			return nil, fmt.Errorf("devices[%d]: %w", i, err)
		}
		if ids[d.ID] {
			return nil, fmt.Errorf("devices[%d]: device %q listed twice", i, d.ID)
		}
		ids[d.ID] = true
		if d.Code != "" {
			if codes[d.Code] {
				return nil, fmt.Errorf("devices[%d]: code %s used twice", i, d.Code)
			}
			codes[d.Code] = true
		}
	}
	return f.Devices, nil
}

// validate checks one stored record.
func (d *Device) validate() error {
	if err := checkText("id", d.ID, 256, true); err != nil {
		return err
	}
	if !strings.HasPrefix(d.NodeKey, "nodekey:") || len(d.NodeKey) > 128 {
		return fmt.Errorf("device %q: node_key %q is not a node key", d.ID, d.NodeKey)
	}
	if err := checkText("node_key", d.NodeKey, 128, true); err != nil {
		return err
	}
	for name, v := range map[string]string{"node": d.Node, "fqdn": d.FQDN, "os": d.OS, "login": d.Login, "approved_by": d.ApprovedBy} {
		if err := checkText(name, v, 512, false); err != nil {
			return fmt.Errorf("device %q: %w", d.ID, err)
		}
	}
	if len(d.Tags) > 64 || len(d.IPs) > maxIPs {
		return fmt.Errorf("device %q: too many tags or ips", d.ID)
	}
	for _, tag := range d.Tags {
		if err := checkText("tags", tag, 256, true); err != nil {
			return fmt.Errorf("device %q: %w", d.ID, err)
		}
	}
	for _, ip := range d.IPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("device %q: ips: %w", d.ID, err)
		}
	}
	switch d.Status {
	case StatusPending:
		if c, ok := ParseCode(d.Code); !ok || c != d.Code {
			return fmt.Errorf("device %q: pending without a valid code", d.ID)
		}
		if d.Auto {
			return fmt.Errorf("device %q: pending and auto-approved at once", d.ID)
		}
	case StatusApproved:
		if d.Code != "" {
			return fmt.Errorf("device %q: approved but still has a pairing code", d.ID)
		}
	default:
		return fmt.Errorf("device %q: unknown status %q", d.ID, d.Status)
	}
	return nil
}

// checkText refuses values that could not have come from a tailnet or an
// operator: invalid UTF-8, control characters, oversized.
func checkText(field, v string, max int, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("%s is empty", field)
	case len(v) > max:
		return fmt.Errorf("%s is longer than %d bytes", field, max)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Errorf("%s holds a control character", field)
	}
	return nil
}

// readFile loads a store. A missing file is an empty store; any other
// problem is an error, and the caller holds every device.
func readFile(path string) (map[string]*Device, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]*Device{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	// Anyone who can write the file can approve devices. (Windows reports
	// synthetic permission bits, so the check would refuse every file there.)
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("writable by other users (mode %04o): chmod 600 it", fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	devices, err := Decode(data)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*Device, len(devices))
	for i := range devices {
		m[devices[i].ID] = &devices[i]
	}
	return m, nil
}

// writeFile replaces the store at path atomically: a new file, 0600, synced,
// renamed over the old one. A crash leaves either the old or the new store,
// never half of one.
func writeFile(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return fmt.Errorf("chmod temporary file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing temporary file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing temporary file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing temporary file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing store: %w", err)
	}
	// The rename is durable only once the directory is; not every platform
	// can sync a directory, and the store is already in place.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
