//go:build !linux

package watch

// Watcher is not available here: the owner polls Fingerprint. (kqueue would
// need a descriptor per watched directory, too many for a large tree.)
type Watcher struct{}

// New returns ErrUnsupported.
func New() (*Watcher, error) { return nil, ErrUnsupported }

// SetBudget does nothing here and returns 0.
func SetBudget(int) int { return 0 }

func (w *Watcher) C() <-chan struct{}              { return nil }
func (w *Watcher) Take() (bool, []string, error)   { return false, nil, ErrUnsupported }
func (w *Watcher) Watch([]Input) ([]string, error) { return nil, ErrUnsupported }
func (w *Watcher) RescanTree(string) error         { return ErrUnsupported }
func (w *Watcher) Watches() int                    { return 0 }
func (w *Watcher) Close()                          {}
