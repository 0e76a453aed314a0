package ptp

import (
	"fmt"
	"time"
)

// optionErr collects the first invalid option given to a constructor; every
// source's config embeds it, so options report errors instead of panicking
// and the constructor returns the first one.
type optionErr struct{ err error }

// invalid records an ErrInvalidOption with the given description.
func (o *optionErr) invalid(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
	}
}

// nonNegative records an invalid option if d, named what, is negative.
func (o *optionErr) nonNegative(what string, d time.Duration) {
	if d < 0 {
		o.invalid("negative %s %v", what, d)
	}
}
