// Package phc reads a PTP hardware clock (/dev/ptpN, or the PHC behind a
// network interface) as a ptp.Clock: every Reading is the PHC's TAI time
// bounded by the read window, an error budget for the PTP domain and, while
// the servo is unlocked, holdover drift, so ptp.WaitUntil can commit-wait on
// it. Sync status comes from a SyncSource that the operator's ptp4l monitor
// feeds (SyncTracker); Clock.SysOffset compares the system clock with the PHC
// through PTP_SYS_OFFSET_PRECISE or _EXTENDED. It lives apart from package
// ptp so that only the binaries that open a device link
// github.com/facebook/time.
//
// PHCs are a Linux interface: elsewhere Open fails with an error wrapping
// ptp.ErrNotSupported.
package phc

// What has run where (keep this current):
//
//   - Run on this project's development VM (Linux, amd64, no /dev/ptp*):
//     Open's error paths (missing device, interface without a PHC, a file
//     that is not a PHC) and every bound's arithmetic on synthetic samples.
//   - Not run on hardware: clock_gettime on a PHC's dynamic clock id,
//     PTP_SYS_OFFSET_PRECISE (and its probe-and-fall-back) and
//     PTP_SYS_OFFSET_EXTENDED have never executed against a real device.
//     TestDevice runs them when a /dev/ptp* exists.
