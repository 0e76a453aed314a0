// Package daemon provides clocks whose uncertainty bound comes from the time
// daemons operators already run beside an edge: chronyd (its command
// socket, through facebook/time/ntp/chrony) and linuxptp's ptp4l (its
// management socket, through facebook/time/ptp/protocol). Each Source is a
// ptp.Clock: it reads the clock the daemon disciplines (the system clock,
// or a PHC given with WithBase) and bounds it by the daemon's own error
// estimate, as the daemon's project defines it, widened with the age of the
// daemon's data; a daemon that does not vouch for its clock, stops
// answering, or goes stale makes readings unsynchronized so releases hold.
// A goroutine per source asks the daemon at its update rate; Now never
// waits on a socket. It is edge-side code: devices never link it.
package daemon

// What has run where (keep this current):
//
//   - Unit tests of the state machine, bounds and ageing run in virtual
//     time (testing/synctest) with injected daemon answers.
//   - Real daemons (Debian bookworm chrony 4.3, linuxptp 3.1.1) run in the
//     tests' own network namespaces on this project's VM (Linux 6.18, no
//     PHC): chronyd -x (never steering the host clock) and ptp4l -S with
//     free_running 1 (measuring, never steering). Hardware timestamping
//     with a PHC base has not run anywhere.
