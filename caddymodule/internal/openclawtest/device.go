package openclawtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Device is an OpenClaw device identity, as the Control UI and the CLI keep
// one: an Ed25519 key pair whose id is the SHA-256 of the raw public key, in
// hex. A connect that carries it is signed over the server's nonce, and the
// gateway pairs the device once an operator approves it.
type Device struct {
	priv ed25519.PrivateKey
}

// NewDevice mints a device identity.
func NewDevice() (*Device, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("minting a device key: %w", err)
	}
	return &Device{priv: priv}, nil
}

// ID returns the device id the gateway derives from the public key.
func (d *Device) ID() string {
	sum := sha256.Sum256(d.priv.Public().(ed25519.PublicKey))
	return hex.EncodeToString(sum[:])
}

// connect params of the client ConnectDevice plays.
const (
	deviceClientID   = "cli"
	deviceClientMode = "cli"
	devicePlatform   = "linux"
)

// ConnectDevice is Connect as device d: the connect request carries the
// device's public key and its signature over the v3 device auth payload
// (v3|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce|
// platform|deviceFamily). A device the gateway has not paired yet is
// refused with an *Error whose PairingRequestID is set.
func (c *Client) ConnectDevice(ctx context.Context, scopes []string, d *Device) (*Hello, error) {
	nonce, err := c.challenge(ctx)
	if err != nil {
		return nil, err
	}
	signedAt := time.Now().UnixMilli()
	payload := strings.Join([]string{"v3", d.ID(), deviceClientID, deviceClientMode, "operator", strings.Join(scopes, ","),
		strconv.FormatInt(signedAt, 10), "", nonce, devicePlatform, ""}, "|")
	b64 := base64.RawURLEncoding
	params := connectParams(map[string]any{"id": deviceClientID, "version": "0.0.1", "platform": devicePlatform, "mode": deviceClientMode}, scopes)
	params["device"] = map[string]any{
		"id":        d.ID(),
		"publicKey": b64.EncodeToString(d.priv.Public().(ed25519.PublicKey)),
		"signature": b64.EncodeToString(ed25519.Sign(d.priv, []byte(payload))),
		"signedAt":  signedAt,
		"nonce":     nonce,
	}
	return c.hello(ctx, params)
}

var pairingRequestID = regexp.MustCompile(`\(requestId:\s*([^\s)]+)\)`)

// PairingRequestID returns the id of the pairing request a refused device
// connect opened (the one `openclaw devices approve` takes), or "".
func PairingRequestID(err error) string {
	e, ok := err.(*Error)
	if !ok {
		return ""
	}
	if e.Details.RequestID != "" {
		return e.Details.RequestID
	}
	if m := pairingRequestID.FindStringSubmatch(e.Message); m != nil {
		return m[1]
	}
	return ""
}

// ApproveDevice runs `openclaw devices approve requestID` of release line
// version ("" for the pinned one) on the gateway's host, as its operator
// would: with the gateway's config, state dir and home, and its port as the
// local gateway's.
// The CLI tries the gateway first and, refused there, approves in the state
// dir itself. It returns what the CLI printed.
func (g *Gateway) ApproveDevice(t testing.TB, version, requestID string) ([]byte, error) {
	t.Helper()
	bin := RequireVersion(t, version)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "devices", "approve", requestID, "--json")
	cmd.Env = append(os.Environ(), "OPENCLAW_GATEWAY_PORT="+strconv.Itoa(g.Port),
		"HOME="+filepath.Join(g.Dir, "home"), "OPENCLAW_CONFIG_PATH="+g.ConfigPath(), "OPENCLAW_STATE_DIR="+g.StateDir(),
		"OPENCLAW_DISABLE_BONJOUR=1", "OPENCLAW_NO_RESPAWN=1", "OPENCLAW_NO_AUTO_UPDATE=1", "DO_NOT_TRACK=1", "NO_COLOR=1")
	return cmd.CombinedOutput()
}
