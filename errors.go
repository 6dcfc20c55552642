package syncer

import "errors"

// ErrOverflow means the kernel dropped file-system events: what changed since
// the last good moment is unknown and a reconcile must find it.
var ErrOverflow = errors.New("event queue overflow: changes lost")
