package caddymodule

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/clawgate/clawgate/caddymodule/internal/pairing"
)

// Device approvals live in Caddy's storage, shared by every instance that
// names the same storage; each instance polls it for the changes others make.

// Bounds and default of PairingConfig.PollInterval.
const (
	minPairingPoll     = time.Second
	maxPairingPoll     = 30 * time.Second
	defaultPairingPoll = 2 * time.Second
)

// checkPollInterval refuses a poll interval outside its bounds: shorter
// loads the storage for little gain, longer lets a revocation made elsewhere
// wait too long.
func checkPollInterval(d time.Duration) error {
	if d < minPairingPoll || d > maxPairingPoll {
		return fmt.Errorf("%v is outside %v to %v", d, minPairingPoll, maxPairingPoll)
	}
	return nil
}

// storageName names a storage for the log: its own description when it has
// one (the file system storage names its directory), else its type.
func storageName(st pairing.Storage) string {
	if s, ok := st.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", st)
}

func (pc *pairingRuntime) storageFields(more ...zap.Field) []zap.Field {
	return append([]zap.Field{zap.String("storage", pc.storageName), zap.String("prefix", pc.store.Prefix())}, more...)
}

// startPairing moves each gateway's old approval file into storage and starts
// polling the storage. It runs when the config starts, not when it is only
// validated.
func (a *App) startPairing() {
	for _, gc := range a.Gateways {
		if !gc.Pairing.required() {
			continue
		}
		pc := gc.Pairing.rt
		pc.migrate()
		ctx, cancel := context.WithCancel(context.Background())
		pc.stopPoll = cancel
		pc.polling.Go(func() { pc.pollLoop(ctx) })
	}
}

// stopPairing stops polling and waits for the pollers to return.
func (a *App) stopPairing() {
	for _, gc := range a.Gateways {
		if gc.Pairing.required() && gc.Pairing.rt.stopPoll != nil {
			gc.Pairing.rt.stopPoll()
			gc.Pairing.rt.polling.Wait()
		}
	}
}

// migrate moves the gateway's old approval file, if there is one, into
// storage, and logs what it did. A file that cannot be moved stays as it is;
// its devices wait for approval again.
func (pc *pairingRuntime) migrate() {
	if pc.legacyFile == "" {
		return
	}
	m, err := pc.store.Migrate(pc.legacyFile)
	if err != nil {
		pc.logger.Error("device pairing: the old approval file could not be moved into Caddy's storage; it is left as it is, and its devices wait for approval until it is fixed and Caddy restarts",
			pc.storageFields(zap.String("file", pc.legacyFile), zap.Error(err))...)
		return
	}
	if m != nil {
		pc.logger.Warn("device pairing: moved the old approval file into Caddy's storage",
			pc.storageFields(zap.String("file", m.File), zap.Int("moved", m.Moved), zap.Int("kept", m.Kept),
				zap.String("renamed_to", m.RenamedTo), zap.String("note", m.Note))...)
	}
}

// pollLoop reads the storage every poll interval until ctx ends.
func (pc *pairingRuntime) pollLoop(ctx context.Context) {
	t := time.NewTicker(pc.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(pc.poll, 10*time.Second))
		res := pc.store.Refresh(rctx, false)
		cancel()
		if ctx.Err() != nil {
			return
		}
		pc.applyRefresh(res)
	}
}

// applyRefresh logs what a read of the storage found and closes the
// WebSockets of devices whose approval no longer holds.
func (pc *pairingRuntime) applyRefresh(res pairing.RefreshResult) {
	closed := 0
	for _, d := range res.Lapsed {
		n := closeDeviceConns(pc.gateway, d.ID)
		closed += n
		if !res.Expired {
			pc.logger.Info("device approval withdrawn in storage (revoked or changed through another instance)",
				append(deviceFields(d), zap.Int("closed_websockets", n))...)
		}
	}
	switch {
	case res.Expired:
		pc.logger.Error("device pairing storage still cannot be read: every device of this gateway is held until it reads again",
			pc.storageFields(zap.Int("closed_websockets", closed), zap.Error(res.Err))...)
	case res.Failed:
		pc.lastErrLog.Store(time.Now().UnixNano())
		pc.logger.Error("device pairing storage cannot be read: new and changed devices are held; devices approved before pass on the last good read for a while, then are held too",
			pc.storageFields(zap.Error(res.Err))...)
	case res.Recovered:
		pc.logger.Info("device pairing storage reads again", pc.storageFields()...)
	}
}
