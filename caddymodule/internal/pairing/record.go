package pairing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Key layout in Caddy's storage, one gateway's devices under one prefix:
//
//	clawgate/pairing/<gateway>/devices/<node-id>.json   one record per device
//	clawgate/pairing/<gateway>/generation               rewritten after every change
//
// A name made of letters, digits, '-' and '_' is used as it is; any other
// name is written as '~' and its unpadded base64url form, so no gateway name
// or node ID can reach outside its prefix. Instances polling the storage read
// the small generation key and read the devices again only when it changed.
const keyRoot = "clawgate/pairing"

// recordVersion is the record format written by this package; any other
// version is refused rather than guessed at.
const recordVersion = 1

// maxRecordSize bounds what is read of one record: a real one is under a
// kilobyte.
const maxRecordSize = 64 << 10

// record is one device's key.
type record struct {
	Version int    `json:"version"`
	Gateway string `json:"gateway"`
	Device  Device `json:"device"`
}

// keyPart returns name as one segment of a storage key.
func keyPart(name string) string {
	plain := name != ""
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			plain = false
			break
		}
	}
	if plain {
		return name
	}
	return "~" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// fromKeyPart reverses keyPart.
func fromKeyPart(part string) (string, bool) {
	if enc, ok := strings.CutPrefix(part, "~"); ok {
		b, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil || len(b) == 0 || keyPart(string(b)) != part {
			return "", false
		}
		return string(b), true
	}
	if part == "" || keyPart(part) != part {
		return "", false
	}
	return part, true
}

// Prefix returns the storage prefix of a gateway's devices.
func Prefix(gateway string) string { return path.Join(keyRoot, keyPart(gateway)) }

func devicesPrefix(gateway string) string { return path.Join(Prefix(gateway), "devices") }

func deviceKey(gateway, id string) string {
	return path.Join(devicesPrefix(gateway), keyPart(id)+".json")
}

func generationKey(gateway string) string { return path.Join(Prefix(gateway), "generation") }

// idFromKey returns the device ID a device key names.
func idFromKey(key string) (string, bool) {
	name, ok := strings.CutSuffix(path.Base(key), ".json")
	if !ok {
		return "", false
	}
	return fromKeyPart(name)
}

// encodeRecord returns the storage form of one device of gateway.
func encodeRecord(gateway string, d Device) ([]byte, error) {
	b, err := json.MarshalIndent(record{Version: recordVersion, Gateway: gateway, Device: d}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding device %q: %w", d.ID, err)
	}
	return append(b, '\n'), nil
}

// decodeRecord parses one device key of gateway strictly: unknown fields,
// trailing data, another version or gateway, an inconsistent device, or a
// device whose ID is not the one the key names make it an error, because a
// record that is only partly understood, or copied from another gateway's
// keys, must not approve anything.
func decodeRecord(data []byte, gateway, id string) (Device, error) {
	if len(data) > maxRecordSize {
		return Device{}, fmt.Errorf("larger than %d bytes", maxRecordSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Device{}, errors.New("empty record (a record is never written empty: truncated?)")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return Device{}, fmt.Errorf("parsing: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Device{}, errors.New("parsing: data after the end of the record")
	}
	if r.Version != recordVersion {
		return Device{}, fmt.Errorf("version %d: want %d", r.Version, recordVersion)
	}
	if r.Gateway != gateway {
		return Device{}, fmt.Errorf("a record of gateway %q, not %q", r.Gateway, gateway)
	}
	if err := r.Device.validate(); err != nil {
		return Device{}, err
	}
	if r.Device.ID != id {
		return Device{}, fmt.Errorf("the record is of device %q, not %q", r.Device.ID, id)
	}
	return r.Device, nil
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
