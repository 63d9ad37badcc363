package pairing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// fileVersion is the format of the approval file that held a gateway's
// devices before they moved to Caddy's storage; Migrate reads it, nothing
// writes it.
const fileVersion = 1

// maxFileSize bounds what is read: a store of many thousand devices is far
// smaller, and anything bigger is not ours.
const maxFileSize = 16 << 20

// file is the approval file's format.
type file struct {
	Version int      `json:"version"`
	Devices []Device `json:"devices"`
}

// decodeFile parses an approval file strictly: unknown fields, trailing data, an
// unknown version or an inconsistent record make it an error, because a
// store that is only partly understood must not approve anything.
func decodeFile(data []byte) ([]Device, error) {
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

// readFile loads an approval file; the error matches fs.ErrNotExist when
// there is none.
func readFile(path string) ([]Device, error) {
	f, err := os.Open(path)
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
	// Anyone who could write the file could have approved devices in it.
	// (Windows reports synthetic permission bits, so the check would refuse
	// every file there.)
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
	return decodeFile(data)
}
