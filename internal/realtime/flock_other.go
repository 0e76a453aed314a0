//go:build !unix

package realtime

import "os"

// flock does nothing where there is no flock(2): tests in one process are
// still serialized by the package's mutex.
func flock(*os.File) error { return nil }
