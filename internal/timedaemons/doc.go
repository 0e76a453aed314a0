// Package timedaemons runs the real time daemons operators run beside an
// edge — Debian's chrony and linuxptp — inside network namespaces the
// caller built (internal/netns), for the tests of ptp/daemon, the fault
// suite and `embargo bench -clock-daemons`. Neither ever touches the
// host's clock: chronyd runs with -x (no clock control), ptp4l with
// free_running 1 (measure, never steer), so both measure the host clock
// against itself through a real protocol exchange. The caller stops every
// Proc it started and deletes the namespaces.
package timedaemons
